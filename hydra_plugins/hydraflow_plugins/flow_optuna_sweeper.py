"""The ``flow_optuna`` sweeper: Optuna without a batch barrier, pruning from live metrics, resume.

This module is imported at Hydra's plugin discovery, so it stays thin (no Optuna import); the work
is in ``_optuna_core``. Its config is ``FlowOptunaSweeperConf`` (``hydra/sweeper=flow_optuna``).
"""

from typing import Any

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FlowOptunaSweeper(Sweeper):
    """``hydra/sweeper=flow_optuna``: a drop-in for ``hydra/sweeper=optuna``.

    ``n_jobs`` trials run at once; the moment one ends its value is told to Optuna and the next trial
    starts in its slot. With ``prune_on``, running trials' intermediate values are read from their
    MLflow runs and pruned trials are stopped. The same ``study_name`` continues a study.
    """

    def __init__(self, **params: Any) -> None:
        self.params = params  # checked in setup, where an error reaches the user as one message
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        from hydra.core.plugins import Plugins

        from hydra_plugins.hydraflow_plugins._optuna_options import SweeperOptions

        self.options = SweeperOptions.from_params(self.params, list(config.hydra.overrides.hydra))
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.hydraflow_plugins import _optuna_core

        return _optuna_core.sweep(self, arguments)
