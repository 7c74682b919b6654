"""Resume for the ``flow`` sweeper: skip jobs whose resolved config already has a FINISHED run.

The MLflow callback tags every job run with ``hydraflow.config_hash`` (the hash of the job's resolved
config). Before a batch is launched, each job's config is composed and hashed the same way; a job
whose hash has a FINISHED run in the experiment is not launched, is reported as skipped, and returns
the result recorded on that run (``hydraflow.return_value``, else the ``return_value`` metric).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.hydraflow_plugins.config import CALLBACK_TARGET

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = ["ResumingLauncher", "launch_numbered"]


def mlflow_callback_settings(config: DictConfig) -> dict[str, Any] | None:
    """The MLflow callback's arguments from ``hydra.callbacks``, or ``None`` if it is off."""
    callbacks = OmegaConf.select(config, "hydra.callbacks", default=None) or {}
    for entry in callbacks.values():
        if OmegaConf.select(entry, "_target_", default=None) == CALLBACK_TARGET:
            settings = OmegaConf.to_container(entry, resolve=True)
            assert isinstance(settings, dict)
            return {str(k): v for k, v in settings.items() if k != "_target_"}
    return None


def launch_numbered(launcher: Launcher, todo: list[tuple[int, list[str]]]) -> list[JobReturn]:
    """Launch jobs with explicit numbers (in ``todo``'s order) on any launcher.

    The flow launcher takes the numbers as they are; other launchers number jobs consecutively from
    ``initial_job_idx``, so each run of consecutive numbers is one ``launch()``.
    """
    if not todo:
        return []
    numbered = getattr(launcher, "launch_numbered", None)
    if numbered is not None:
        return list(numbered(todo))
    returns: list[JobReturn] = []
    start = 0
    while start < len(todo):
        end = start + 1
        while end < len(todo) and todo[end][0] == todo[end - 1][0] + 1:
            end += 1
        batch = [overrides for _, overrides in todo[start:end]]
        returns.extend(launcher.launch(batch, initial_job_idx=todo[start][0]))
        start = end
    return returns


class ResumingLauncher(Launcher):
    """Wraps the sweeper's launcher: launches only the jobs that have no FINISHED run yet."""

    def __init__(self, inner: Launcher, hydra_context: HydraContext, config: DictConfig) -> None:
        self.inner = inner
        self.hydra_context = hydra_context
        self.config = config

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.inner.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        finished = self._finished_runs()
        if not finished:
            return self.inner.launch(job_overrides, initial_job_idx)
        results: dict[int, JobReturn] = {}
        todo: list[tuple[int, list[str]]] = []
        for offset, overrides in enumerate(job_overrides):
            num = initial_job_idx + offset
            sweep_config = self._compose(num, list(overrides))
            digest = self._hash(sweep_config)
            run = finished.get(digest)
            if run is None:
                todo.append((num, list(overrides)))
                continue
            results[num] = _recorded_return(sweep_config, list(overrides), run)
            text = " ".join(filter_overrides(overrides)) or "(no overrides)"
            message = (
                f"[flow] resume: job #{num} ({text}) skipped: run {run.info.run_id} already "
                "FINISHED with this config (hydra.sweeper.rerun_finished=true runs it again)"
            )
            print(message, file=sys.stderr, flush=True)  # once: Hydra's log also goes to stderr
        for ret in self._launch(todo):
            results[int(ret.hydra_cfg.hydra.job.num)] = ret  # type: ignore[union-attr]
        return [results[initial_job_idx + i] for i in range(len(job_overrides))]

    def _launch(self, todo: list[tuple[int, list[str]]]) -> Sequence[JobReturn]:
        return launch_numbered(self.inner, todo)

    def _finished_runs(self) -> dict[str, Run]:
        settings = mlflow_callback_settings(self.config)
        if settings is None:
            return {}
        from hydraflow._mlflow_store import finished_job_runs
        from hydraflow.conventions import resolve_tracking_uri

        uri = settings.get("tracking_uri") or resolve_tracking_uri(
            str(self.config.hydra.runtime.cwd)
        )
        experiment = settings.get("experiment") or str(self.config.hydra.job.name)
        return finished_job_runs(uri, experiment)

    def _compose(self, num: int, overrides: list[str]) -> DictConfig:
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.num = num
        return sweep_config

    @staticmethod
    def _hash(sweep_config: DictConfig) -> str:
        from hydraflow.callbacks import job_config_container
        from hydraflow.conventions import config_hash

        saved = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(sweep_config)
        try:
            return config_hash(job_config_container(sweep_config))
        finally:
            HydraConfig.instance().cfg = saved


def _recorded_return(sweep_config: DictConfig, overrides: list[str], run: Run) -> JobReturn:
    from hydraflow.conventions import TAG_RETURN_VALUE

    ret = JobReturn()
    ret.overrides = overrides
    task_cfg = OmegaConf.create(OmegaConf.to_container(sweep_config, resolve=False))
    assert isinstance(task_cfg, DictConfig)
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    ret.cfg = task_cfg
    ret.hydra_cfg = OmegaConf.create({"hydra": sweep_config.hydra})
    ret.task_name = str(sweep_config.hydra.job.name)
    ret.status = JobStatus.COMPLETED
    text = run.data.tags.get(TAG_RETURN_VALUE)
    if text is not None:
        ret.return_value = json.loads(text)
    else:
        ret.return_value = run.data.metrics.get("return_value")
    return ret
