"""The launcher's side of remote jobs: stage their specs, bring finished jobs home, import runs.

See :mod:`hydra_plugins.hydraflow_plugins._remote` for the layout on the remote host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import cloudpickle
from omegaconf import DictConfig

from hydra_plugins.hydraflow_plugins._job_runner import job_spec
from hydra_plugins.hydraflow_plugins._remote import (
    RemoteLayout,
    check_staged,
    collect_if_done,
    stage_dir,
)
from hydra_plugins.hydraflow_plugins._tasks import FlowJob

if TYPE_CHECKING:
    from flow_backend import Flow
    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher

__all__ = ["RemoteJobs", "remote_jobs"]

log = logging.getLogger(__name__)


class RemoteJobs:
    """The remote side of one launch: where each job's output comes home, and its MLflow import."""

    def __init__(
        self, launcher: FlowLauncher, stage: Path, outputs: dict[int, Path], user_store: str | None
    ) -> None:
        self.sweep_id = launcher.sweep_id
        self.stage = stage
        self.outputs = outputs
        self.user_store = user_store

    def collector(self, flow: Flow) -> Callable[[FlowJob], None]:
        """The per-poll step for a running job: fetch its results once it has finished."""

        def collect(job: FlowJob) -> None:
            assert job.task is not None
            layout = RemoteLayout(self.sweep_id, job.num)
            output = self.outputs[job.num]
            came = collect_if_done(
                flow, job.task_id, layout, job.attempts, output, job.files.result
            )
            if came is None:
                return
            job.remote_output = came[1]
            self._import(job, output)

        return collect

    def _import(self, job: FlowJob, output: Path) -> None:
        """Copy the job's own MLflow store into the user's (idempotent)."""
        if self.user_store is None or not (output / "mlflow.db").is_file():
            return
        from hydraflow.run_import import import_runs, store_uri_for

        try:
            # the whole remote sweep folder maps onto the sweep dir here (tags name its parent)
            remote_sweep = str(PurePosixPath(job.remote_output or str(output)).parent)
            import_runs(
                store_uri_for(output),
                self.user_store,
                moved_from=remote_sweep,
                moved_to=output.parent,
            )
        except Exception as error:  # the job's store stays in its folder: import it later
            log.warning(
                f"job #{job.num}: could not import its MLflow runs from {output / 'mlflow.db'} "
                f"into {self.user_store}: {type(error).__name__}: {error}"
            )

    def cleanup(self) -> None:
        """Remove the staged specs from the launch dir."""
        shutil.rmtree(self.stage, ignore_errors=True)
        with contextlib.suppress(OSError):  # .hydraflow/, when no other sweep uses it
            self.stage.parent.rmdir()


def remote_jobs(
    launcher: FlowLauncher,
    jobs: Sequence[FlowJob],
    common: dict[str, bytes],
    compose: Callable[[FlowLauncher, FlowJob], DictConfig],
) -> RemoteJobs:
    """Stage every job's spec in the launch dir (uploaded with the code) and check it will go.

    The sweep config is composed here, so the remote side needs no config files of this machine;
    the spec carries no local paths (the runner starts in the uploaded code).
    """
    launch_dir = Path(os.getcwd())
    stage = stage_dir(launch_dir, launcher.sweep_id)
    outputs: dict[int, Path] = {}
    staged: list[Path] = []
    for job in jobs:
        sweep_config = compose(launcher, job)
        outputs[job.num] = Path(str(sweep_config.hydra.runtime.output_dir))
        parts = {**common, "sweep_config": cloudpickle.dumps(sweep_config)}
        path = launch_dir / RemoteLayout(launcher.sweep_id, job.num).spec
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            job_spec(job.num, job.overrides, job.task_name, parts, cwd=None, sys_path=[])
        )
        staged.append(path)
    result = RemoteJobs(launcher, stage, outputs, _user_store(launcher))
    try:
        check_staged(launch_dir, staged)
    except BaseException:
        result.cleanup()
        raise
    return result


def _user_store(launcher: FlowLauncher) -> str | None:
    """The tracking URI of the user's store, when the sweep logs to MLflow."""
    from hydra_plugins.hydraflow_plugins._resume import mlflow_callback_settings

    if launcher.config is None:
        return None
    settings = mlflow_callback_settings(launcher.config)
    if settings is None:
        return None
    from hydraflow.conventions import resolve_tracking_uri

    return str(
        settings.get("tracking_uri") or resolve_tracking_uri(str(launcher.config.hydra.runtime.cwd))
    )
