"""Remote providers (mithril, ssh): one task per job attempt, its results brought home.

The launcher's side of remote jobs: stage their specs (uploaded with the code), fetch each finished
job's result and output folder, import its MLflow runs. See
:mod:`hydra_plugins.hydraflow_plugins._remote` for the layout on the remote host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import cloudpickle
from omegaconf import DictConfig

from hydra_plugins.hydraflow_plugins._job_runner import job_spec
from hydra_plugins.hydraflow_plugins._jobs import Job, JobContext
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._remote import (
    HOLD_SECONDS,
    RemoteLayout,
    check_staged,
    collect_if_done,
    stage_dir,
)
from hydra_plugins.hydraflow_plugins._remote_env import RemoteEnv, plan_remote_env
from hydra_plugins.hydraflow_plugins._strategy import Attempt, PerTaskStrategy

if TYPE_CHECKING:
    from flow_backend import Flow

__all__ = ["DEFAULT_REMOTE_PYTHON", "RemoteTasks"]

log = logging.getLogger(__name__)

DEFAULT_REMOTE_PYTHON = "python3"


class RemoteTasks(PerTaskStrategy):
    """One remote task per job attempt; the sweep config is composed here (config files stay home).

    A job's spec carries no local paths (the runner starts in the uploaded code); its output folder
    and result come home once it has finished, and its own MLflow store is imported into the user's.
    """

    remote = True

    def __init__(
        self, context: JobContext, flow: Flow, options: LauncherOptions, common: dict[str, bytes]
    ) -> None:
        super().__init__(context, flow, options, common)
        self.stage = stage_dir(Path(os.getcwd()), context.sweep_id)
        self.outputs: dict[int, Path] = {}
        self.user_store = _user_store(context.config)
        self.remote_env: RemoteEnv | None = None
        self.env_planned = False

    def _prepare(self, jobs: Sequence[Job]) -> None:
        self.stage_jobs(jobs)

    def stage_jobs(self, jobs: Sequence[Job]) -> None:
        """Plan the job environment (once) and stage each job's spec for the code upload."""
        launch_dir = Path(os.getcwd())
        staged = self.plan_env(launch_dir)
        for job in jobs:
            path = launch_dir / RemoteLayout(self.context.sweep_id, job.num).spec
            self.write_spec(job, path)
            staged.append(path)
        self.check_uploaded(launch_dir, staged)

    def plan_env(self, launch_dir: Path) -> list[Path]:
        """Plan the job environment, once per launch (a session prepares each batch it is given);
        the files it staged for the code upload."""
        if self.env_planned:
            return []
        try:
            self.remote_env = plan_remote_env(self.options, launch_dir, self.stage)
        except BaseException:
            self.close()
            raise
        self.env_planned = True
        if self.remote_env is None:
            return []
        return sorted((launch_dir / self.remote_env.code).rglob("*.py"))

    def write_spec(self, job: Job, path: Path) -> None:
        """Compose the job's sweep config here (config files stay home) and write its spec."""
        sweep_config = self.context.compose(job)
        self.outputs[job.num] = Path(str(sweep_config.hydra.runtime.output_dir))
        parts = {**self.common, "sweep_config": cloudpickle.dumps(sweep_config)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            job_spec(job.num, list(job.overrides), job.task_name, parts, cwd=None, sys_path=[])
        )

    def check_uploaded(self, launch_dir: Path, staged: list[Path]) -> None:
        """Stop clearly (staged files removed) when the ignore files would keep any out."""
        try:
            check_staged(launch_dir, staged)
        except BaseException:
            self.close()
            raise

    def _command(self, job: Job, attempt: int) -> list[str]:
        layout = RemoteLayout(self.context.sweep_id, job.num)
        return self.python_command(
            [
                "-m",
                "hydra_plugins.hydraflow_plugins._job_runner",
                layout.spec,
                layout.result(attempt),
                layout.sweep_dir(attempt),
                str(HOLD_SECONDS),
                *self._attempt_args(job, attempt),
            ]
        )

    def python_command(self, args: list[str]) -> list[str]:
        """A task command running ``python <args>`` in the job environment (or on ``python``)."""
        if self.remote_env is not None:
            return self.remote_env.wrap(args)
        return [self.options.python or DEFAULT_REMOTE_PYTHON, *args]

    def _collect(self, attempt: Attempt) -> None:
        """A running job's step per poll: fetch its results once it has finished."""
        job = attempt.job
        if job.files.result.exists():
            return
        output = self.outputs[job.num]
        layout = RemoteLayout(self.context.sweep_id, job.num)
        came = collect_if_done(
            self.flow, attempt.task_id, layout, attempt.number, output, job.files.result
        )
        if came is None:
            return
        attempt.remote_output = came[1]
        self.import_runs(attempt, output)

    def import_runs(self, attempt: Attempt, output: Path) -> None:
        """Copy the job's own MLflow store into the user's (idempotent)."""
        if self.user_store is None or not (output / "mlflow.db").is_file():
            return
        from hydraflow.run_import import import_runs, store_uri_for

        try:
            # the whole remote sweep folder maps onto the sweep dir here (tags name its parent)
            remote_sweep = str(PurePosixPath(attempt.remote_output or str(output)).parent)
            import_runs(
                store_uri_for(output),
                self.user_store,
                moved_from=remote_sweep,
                moved_to=output.parent,
            )
        except Exception as error:  # the job's store stays in its folder: import it later
            log.warning(
                f"job #{attempt.job.num}: could not import its MLflow runs from "
                f"{output / 'mlflow.db'} into {self.user_store}: {type(error).__name__}: {error}"
            )

    def close(self) -> list[str]:
        """Remove the staged specs from the launch dir."""
        shutil.rmtree(self.stage, ignore_errors=True)
        with contextlib.suppress(OSError):  # .hydraflow/, when no other sweep uses it
            self.stage.parent.rmdir()
        return []


def _user_store(config: DictConfig) -> str | None:
    """The tracking URI of the user's store, when the sweep logs to MLflow."""
    from hydra_plugins.hydraflow_plugins._resume import mlflow_callback_settings

    settings = mlflow_callback_settings(config)
    if settings is None:
        return None
    from hydraflow.conventions import resolve_tracking_uri

    return str(settings.get("tracking_uri") or resolve_tracking_uri(str(config.hydra.runtime.cwd)))
