"""A pipeline stage, what its function receives, and what it hands downstream.

A stage function is called with keyword arguments chosen by parameter name:

* ``cfg`` (or the first parameter, when no parameter is called ``cfg``) — the stage's config section,
  ``cfg[stage.name]`` (or ``cfg[config_key]``), resolved and detached; an empty config when absent;
* a parameter named after an upstream stage — that stage's return value;
* ``ctx`` (or any parameter annotated :class:`StageContext`) — the stage's context: ``ctx.cfg``,
  ``ctx.inputs`` (upstream :class:`StageOutput` by name: value, output folder, files),
  ``ctx.output_dir`` (files written there are logged as artifacts and handed downstream),
  ``ctx.pipeline_cfg`` (the whole config: *not* part of the cache key) and ``ctx.log_metric``;
* ``**kwargs`` — every upstream value not taken by a named parameter.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydraflow.pipeline.errors import PipelineDefinitionError

__all__ = ["Stage", "StageContext", "StageOutput"]

_VALID_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class StageOutput:
    """What one finished stage hands downstream.

    Attributes:
        name: The stage's name.
        value: The stage function's return value.
        output_dir: The folder holding the files the stage wrote (its logged artifacts).
        files: Relative path (POSIX) → absolute local path of every file in ``output_dir``.
        run_id: The MLflow run that produced the value.
        cache_key: The stage's cache key.
        cached: Whether the value was reused from an earlier run instead of computed now.
    """

    name: str
    value: Any
    output_dir: Path
    files: dict[str, Path]
    run_id: str
    cache_key: str
    cached: bool


@dataclass
class StageContext:
    """Everything a stage function may ask for besides its config and upstream values.

    Attributes:
        name: The stage's name.
        cfg: The stage's config section (its params and part of its cache key).
        inputs: Upstream stage name → its :class:`StageOutput`.
        output_dir: Write files here; they are logged as the stage's artifacts.
        run_id: The stage's MLflow child run.
        tracking_uri: The MLflow store the run lives in.
        pipeline_cfg: The whole pipeline config. Reading it is allowed but not tracked: only ``cfg``
            is part of the cache key.
    """

    name: str
    cfg: Any
    inputs: dict[str, StageOutput]
    output_dir: Path
    run_id: str
    tracking_uri: str
    pipeline_cfg: Any = None

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Log a metric to the stage's MLflow run."""
        from mlflow.tracking import MlflowClient

        MlflowClient(self.tracking_uri).log_metric(self.run_id, key, float(value), step=step or 0)


class Stage:
    """One step of a :class:`~hydraflow.pipeline.Pipeline`.

    Args:
        name: Unique name in the pipeline; also the default config section and the keyword under
            which dependents receive this stage's return value.
        fn: The stage function (see the module docstring for how it is called).
        resources: When given, the stage runs as a Flow task with these ``TaskConfig`` fields
            (e.g. ``{"instance_type": "a100"}``); otherwise it runs in this process.
        config_key: Config section to use instead of ``name`` (a dotted path such as ``"train.opt"``).
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        resources: Mapping[str, Any] | None = None,
        *,
        config_key: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            raise PipelineDefinitionError(
                f"Stage name {name!r} is invalid: use letters, digits, '_', '.' or '-', "
                "starting with a letter, digit or '_'"
            )
        if not callable(fn):
            raise PipelineDefinitionError(
                f"Stage {name!r}: fn must be callable, got {type(fn).__name__} {fn!r}"
            )
        if resources is not None and not isinstance(resources, Mapping):
            raise PipelineDefinitionError(
                f"Stage {name!r}: resources must be a mapping of TaskConfig fields such as "
                f"{{'instance_type': 'a100'}}, got {resources!r}"
            )
        self.name = name
        self.fn = fn
        self.resources: dict[str, Any] | None = dict(resources) if resources is not None else None
        self.config_key = config_key or name
        self.upstream: list[Stage] = []

    def depends_on(self, *stages: Stage) -> Stage:
        """Declare upstream stages; returns this stage so it reads well inside ``Pipeline([...])``."""
        for stage in stages:
            if not isinstance(stage, Stage):
                raise PipelineDefinitionError(
                    f"Stage {self.name!r}.depends_on() takes Stage objects, got {stage!r}"
                )
            if stage is self:
                raise PipelineDefinitionError(f"Stage {self.name!r} cannot depend on itself")
            if stage not in self.upstream:
                self.upstream.append(stage)
        return self

    @property
    def runs_as_task(self) -> bool:
        """Whether this stage runs as a Flow task (it has ``resources``)."""
        return self.resources is not None

    def __repr__(self) -> str:
        deps = ", ".join(s.name for s in self.upstream)
        return (
            f"Stage({self.name!r}, {getattr(self.fn, '__qualname__', self.fn)!r}, after=[{deps}])"
        )

    # -- calling ---------------------------------------------------------------------------------
    def check_signature(self) -> None:
        """Raise :class:`PipelineDefinitionError` if a required parameter cannot be filled."""
        self.build_kwargs(
            cfg=None, context=None, upstream_values={s.name: None for s in self.upstream}
        )

    def build_kwargs(
        self, cfg: Any, context: StageContext | None, upstream_values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The keyword arguments to call ``fn`` with (see the module docstring)."""
        try:
            params = list(inspect.signature(self.fn).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature: called with no arguments
            return {}
        names = {p.name for p in params}
        kwargs: dict[str, Any] = {}
        taken: set[str] = set()
        var_keyword = False
        for index, param in enumerate(params):
            if param.kind is param.VAR_KEYWORD:
                var_keyword = True
                continue
            if param.kind is param.VAR_POSITIONAL:
                continue
            if param.kind is param.POSITIONAL_ONLY:
                raise PipelineDefinitionError(
                    f"Stage {self.name!r}: parameter {param.name!r} of {_fn_name(self.fn)} is "
                    "positional-only; stage functions are called with keyword arguments"
                )
            if param.name == "ctx" or "StageContext" in str(param.annotation):
                kwargs[param.name] = context
            elif param.name in upstream_values:
                kwargs[param.name] = upstream_values[param.name]
                taken.add(param.name)
            elif param.name == "cfg" or (index == 0 and "cfg" not in names):
                kwargs[param.name] = cfg
            elif param.default is param.empty:
                upstream = ", ".join(upstream_values) or "none"
                raise PipelineDefinitionError(
                    f"Stage {self.name!r}: parameter {param.name!r} of {_fn_name(self.fn)} matches "
                    f"no upstream stage (upstream: {upstream}); name it after an upstream stage, "
                    "or call it cfg or ctx, or give it a default"
                )
        if var_keyword:
            kwargs.update({k: v for k, v in upstream_values.items() if k not in taken})
        return kwargs


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
