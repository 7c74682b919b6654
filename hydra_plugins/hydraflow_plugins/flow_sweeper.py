"""The ``flow`` sweeper: Hydra's basic sweeper plus resume from the MLflow store.

This module is imported at Hydra's plugin discovery, so it stays thin; resume is in ``_resume``.
"""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FlowSweeper(BasicSweeper):
    """``hydra/sweeper=flow``: the basic sweeper's override grammar and ``max_batch_size``.

    Plus resume: a job whose resolved config already has a FINISHED run in the experiment
    (same ``hydraflow.config_hash``) is skipped, reported, and its recorded result returned;
    ``rerun_finished=true`` turns that off.
    """

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        rerun_finished: bool = False,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.rerun_finished = rerun_finished

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        if self.max_batch_size is not None and (
            isinstance(self.max_batch_size, bool) or self.max_batch_size <= 0
        ):
            from hydra_plugins.hydraflow_plugins._options import FlowLauncherError

            raise FlowLauncherError(
                f"hydra.sweeper.max_batch_size={self.max_batch_size!r} is invalid: it must be a "
                "positive number of jobs per batch, or null for one batch. "
                "Set e.g. hydra.sweeper.max_batch_size=8"
            )
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if not self.rerun_finished:
            from hydra_plugins.hydraflow_plugins._resume import ResumingLauncher

            assert self.launcher is not None
            self.launcher = ResumingLauncher(self.launcher, hydra_context, config)
