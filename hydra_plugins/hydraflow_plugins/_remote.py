"""Jobs on a remote provider (mithril, ssh): nothing may rely on paths shared with this machine.

How a remote job travels (paths relative to the task's working folder, the uploaded code)::

    .hydraflow/<sweep id>/<job num>/spec.pkl        uploaded with the code (staged in the launch dir)
    .hydraflow/<sweep id>/<job num>/a<attempt>/     the attempt's result.pkl, its output folder
                                                    (``out/<subdir>``, holding the job's own MLflow
                                                    store) and the ``collected`` mark

The job runner writes the result, then waits (``HOLD_SECONDS``, its last argument) until the
launcher has downloaded it and the output folder and written the mark: the instance is still there while its
results travel home, and the bid is cancelled only afterwards. A preempted or lost attempt never
comes home, so its MLflow run is never imported: the user's store shows one run per job.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from hydra.core.utils import JobReturn
from omegaconf import open_dict, read_write

from hydra_plugins.hydraflow_plugins._options import FlowLauncherError
from hydraflow.task_call_runner import COLLECTED_MARK, HOLD_SECONDS

if TYPE_CHECKING:
    from flow_backend import Flow

__all__ = [
    "HOLD_SECONDS",
    "RemoteLayout",
    "check_staged",
    "collect_if_done",
    "keep_result",
    "stage_dir",
]

log = logging.getLogger(__name__)

STAGE_DIR = ".hydraflow"


def stage_dir(launch_dir: Path, sweep_id: str) -> Path:
    """The folder of the launch dir where this sweep's specs are staged for the code upload."""
    return launch_dir / STAGE_DIR / sweep_id


@dataclass(frozen=True)
class RemoteLayout:
    """Where one job's files live on the remote side (POSIX paths relative to the working folder)."""

    sweep_id: str
    num: int

    @property
    def folder(self) -> PurePosixPath:
        return PurePosixPath(STAGE_DIR, self.sweep_id, str(self.num))

    @property
    def spec(self) -> str:
        return str(self.folder / "spec.pkl")

    def attempt(self, attempt: int) -> PurePosixPath:
        return self.folder / f"a{attempt}"

    def result(self, attempt: int) -> str:
        return str(self.attempt(attempt) / "result.pkl")

    def sweep_dir(self, attempt: int) -> str:
        """The attempt's ``hydra.sweep.dir`` (each attempt writes a fresh output folder)."""
        return str(self.attempt(attempt) / "out")

    def mark(self, attempt: int) -> str:
        return str(self.attempt(attempt) / COLLECTED_MARK)


def check_staged(launch_dir: Path, staged: list[Path]) -> None:
    """Fail clearly when the ignore files would keep the staged specs out of the code upload."""
    from hydraflow.task_call import not_uploaded

    missing = not_uploaded(launch_dir, staged)
    if missing:
        raise FlowLauncherError(
            f"The job specs under {launch_dir / STAGE_DIR} would not be uploaded: an ignore file "
            f"(.gitignore/.flowignore) of {launch_dir} excludes "
            f"{missing[0].relative_to(launch_dir)}. Add the line `!{STAGE_DIR}/` to "
            f"{launch_dir / '.flowignore'}"
        )


def collect_if_done(
    flow: Flow, task_id: str, layout: RemoteLayout, attempt: int, local_output: Path, result: Path
) -> tuple[JobReturn, str] | None:
    """Bring a finished attempt home: result, output folder, then the mark that frees the runner.

    Returns the job's result (its paths pointing at ``local_output``) and the remote output folder
    it came from, or ``None`` while the job has not finished (or its files could not be fetched
    yet: the next poll tries again).
    """
    import cloudpickle

    from flow_backend.errors import FlowError, ResourceNotFoundError

    pending = result.with_name(result.name + ".part")
    try:
        flow.provider.download(task_id, layout.result(attempt), pending)
    except ResourceNotFoundError:
        return None  # still running
    except FlowError as error:
        log.debug("task %s: result not reachable yet: %s", task_id, error)
        return None
    try:
        job_return = cloudpickle.loads(pending.read_bytes())
        remote_output = str(job_return.hydra_cfg.hydra.runtime.output_dir)
        if local_output.exists():
            shutil.rmtree(local_output)
        flow.provider.download(task_id, remote_output, local_output)
    except Exception as error:  # preempted mid-download, a bad pickle: the next poll tries again
        log.warning("task %s: could not bring the job's output home yet: %s", task_id, error)
        pending.unlink(missing_ok=True)
        return None
    keep_result(job_return, local_output, result)
    pending.unlink(missing_ok=True)
    try:
        flow.provider.shell(task_id, f": > {layout.mark(attempt)}")
    except FlowError as error:  # the runner stops waiting by itself; the task still ends
        log.warning("task %s: could not release the finished job: %s", task_id, error)
    return job_return, remote_output


def keep_result(job_return: JobReturn, local_output: Path, result: Path) -> None:
    """Point a result that came home at its output folder here and write it where results are read."""
    import cloudpickle

    from hydraflow.task_call_runner import write_atomic

    _point_home(job_return, local_output)
    write_atomic(result, cloudpickle.dumps(job_return))


def _point_home(job_return: JobReturn, local_output: Path) -> None:
    """Make the returned config name the local output folder, as after a local run."""
    job_return.working_dir = str(local_output)
    hydra_cfg = job_return.hydra_cfg
    if hydra_cfg is None:
        return
    with read_write(hydra_cfg.hydra.runtime), open_dict(hydra_cfg.hydra.runtime):
        hydra_cfg.hydra.runtime.output_dir = str(local_output)
    with read_write(hydra_cfg.hydra.sweep), open_dict(hydra_cfg.hydra.sweep):
        hydra_cfg.hydra.sweep.dir = str(local_output.parent)
