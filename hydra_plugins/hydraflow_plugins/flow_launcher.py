"""The ``flow`` launcher: the jobs of a Hydra multirun run as Flow tasks.

This module is imported at Hydra's plugin discovery, so it stays thin; the work is in ``_core``.
"""

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

if TYPE_CHECKING:
    from hydra_plugins.hydraflow_plugins._session import FlowJobSession


class FlowLauncher(Launcher):
    """Launch every job as a Flow task (``hydra/launcher=flow``); see ``FlowLauncherConf``."""

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.sweep_id = ""

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        from hydraflow.sweep_context import sweep_ids

        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context
        # The MLflow callback's on_multirun_start (if on) chose the sweep id already.
        ids = sweep_ids(hydra_context)
        self.sweep_id = ids.sweep_id if ids is not None else secrets.token_hex(4)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from hydra_plugins.hydraflow_plugins import _core

        return _core.launch(self, job_overrides, initial_job_idx)

    def launch_numbered(self, numbered: Sequence[tuple[int, list[str]]]) -> Sequence[JobReturn]:
        """Launch jobs with explicit job numbers (used by the flow sweeper's resume)."""
        from hydra_plugins.hydraflow_plugins import _core

        return _core.launch_numbered(self, numbered)

    def session(self) -> "FlowJobSession":
        """A :class:`~hydra_plugins.hydraflow_plugins._session.JobSession` on this launcher.

        Use it as a context manager: submit jobs, take their outcomes as they end; leaving it
        cancels what is still active and releases every task it started.
        """
        from hydra_plugins.hydraflow_plugins._session import FlowJobSession

        return FlowJobSession(self)
