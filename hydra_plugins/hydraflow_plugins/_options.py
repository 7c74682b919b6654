"""The launcher's settings, checked once, with one clear message per bad value."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException

from hydra_plugins.hydraflow_plugins.config import LauncherFields

__all__ = ["FlowLauncherError", "LauncherOptions"]

LOCAL_POLL_INTERVAL = 0.05
REMOTE_POLL_INTERVAL = 5.0
OPEN_SESSION_SLOTS = 8  # remote jobs at once in a session of unknown size, unless max_parallel


class FlowLauncherError(CompactHydraException):
    """A launcher problem the user fixes by changing input; Hydra prints only the message."""


def invalid_value(name: str, value: Any, what: str, example: str) -> FlowLauncherError:
    return FlowLauncherError(
        f"hydra.launcher.{name}={value!r} is invalid: {what}. "
        f"Set e.g. hydra.launcher.{name}={example}"
    )


def _positive(name: str, value: Any, example: str, integer: bool = False) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_value(name, value, "it must be a number", example)
    if integer and not float(value).is_integer():
        raise invalid_value(name, value, "it must be a whole number", example)
    if not (value > 0 and math.isfinite(value)):
        raise invalid_value(
            name, value, "it must be greater than 0 (or null for the default)", example
        )
    return int(value) if integer else float(value)


@dataclass
class LauncherOptions(LauncherFields):
    """The ``hydra.launcher`` fields of ``hydra/launcher=flow`` after validation."""

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LauncherOptions:
        """Validate the launcher's keyword arguments (already type-checked by OmegaConf)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise FlowLauncherError(
                f"hydra.launcher has unknown field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(sorted(known))}"
            )
        from omegaconf import OmegaConf

        plain: dict[str, Any] = {
            key: OmegaConf.to_container(value, resolve=True)
            if OmegaConf.is_config(value)
            else value
            for key, value in params.items()
        }
        opts = cls(**plain)
        opts.max_parallel = _positive("max_parallel", opts.max_parallel, "4", integer=True)
        opts.num_instances = _positive("num_instances", opts.num_instances, "1", integer=True) or 1
        opts.poll_interval = _positive("poll_interval", opts.poll_interval, "0.5")
        opts.max_price_per_hour = _positive("max_price_per_hour", opts.max_price_per_hour, "10")
        opts.max_run_time_hours = _positive("max_run_time_hours", opts.max_run_time_hours, "2")
        if opts.max_total_cost is not None and not (
            isinstance(opts.max_total_cost, (int, float)) and opts.max_total_cost >= 0
        ):
            raise invalid_value(
                "max_total_cost", opts.max_total_cost, "it must be 0 or more dollars", "50"
            )
        if isinstance(opts.max_retries, bool) or not (
            isinstance(opts.max_retries, int) and opts.max_retries >= 0
        ):
            raise invalid_value(
                "max_retries", opts.max_retries, "it must be a whole number >= 0", "2"
            )
        opts.env = {str(k): str(v) for k, v in (opts.env or {}).items()}
        opts.volumes = list(opts.volumes or [])
        return opts

    def parallelism(self, provider: str, jobs: int | None) -> int:
        """Jobs at once: ``max_parallel``, else the CPU count locally, else every job.

        ``jobs`` is ``None`` for a session whose jobs are not known yet (a sweeper's): remote
        providers then run ``OPEN_SESSION_SLOTS`` at once.
        """
        if self.max_parallel is not None:
            return self.max_parallel
        if provider == "local":
            return max(1, os.cpu_count() or 1)
        return max(1, jobs if jobs is not None else OPEN_SESSION_SLOTS)

    def poll_seconds(self, provider: str) -> float:
        """Seconds between status polls: ``poll_interval``, else a provider-dependent default."""
        if self.poll_interval is not None:
            return self.poll_interval
        return LOCAL_POLL_INTERVAL if provider == "local" else REMOTE_POLL_INTERVAL
