"""Where a job's files live: one place for the launcher, the job runner and (later) remote downloads.

What the launcher and a task exchange sits in one folder per job under the sweep dir; the job's own
output folder (``hydra.sweep.dir/<subdir>``) is written by Hydra on the task side as usual::

    <sweep dir>/.flow/<job num>/
        spec.pkl              what to run (written by the launcher)
        result.pkl            the pickled JobReturn (written by the task)
        task.log              the task's captured stdout/stderr (written by the launcher)
    <sweep dir>/<subdir>/
        .hydra/, <job>.log    Hydra's own record (written by the task)
        flow-task.log         a copy of the task's captured output (written by the launcher)

A remote provider downloads both folders to make ``hydra.sweep.dir`` look as after a local run.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SPEC_NAME = "spec.pkl"
RESULT_NAME = "result.pkl"
FILES_DIR = ".flow"
TASK_LOG_NAME = "task.log"
OUTPUT_TASK_LOG_NAME = "flow-task.log"
RUNNER_MODULE = "hydra_plugins.hydraflow_plugins._job_runner"


class SpecLoading:
    """Task side, in process: whether the job runner is unpickling a spec right now.

    Unpickling a spec imports ``config.py`` (Hydra's pickled ConfigStore refers to its classes),
    which then skips importing the instance catalog: the job gets the ConfigStore from the spec.
    """

    active = False

    def __enter__(self) -> None:
        SpecLoading.active = True

    def __exit__(self, *exc: object) -> None:
        SpecLoading.active = False


@dataclass(frozen=True)
class JobFiles:
    """The launcher/task exchange files of one job."""

    folder: Path

    @classmethod
    def for_job(cls, sweep_dir: Path, job_num: int) -> JobFiles:
        """The files of job ``job_num`` of the sweep in ``sweep_dir``."""
        return cls(sweep_dir / FILES_DIR / str(job_num))

    @property
    def spec(self) -> Path:
        return self.folder / SPEC_NAME

    @property
    def result(self) -> Path:
        return self.folder / RESULT_NAME

    @property
    def task_log(self) -> Path:
        return self.folder / TASK_LOG_NAME


def output_task_log(output_dir: Path) -> Path:
    """Where the copy of the task's captured output goes in the job's output folder."""
    return output_dir / OUTPUT_TASK_LOG_NAME


def result_path_for(spec_path: Path) -> Path:
    """The result file written next to ``spec_path`` (task side)."""
    return spec_path.with_name(RESULT_NAME)


def copy_task_log(num: int, files: JobFiles, output_dir: Path) -> None:
    """Copy job ``num``'s captured task output into its output folder (as ``flow-task.log``)."""
    try:
        if files.task_log.is_file() and output_dir.is_dir():
            shutil.copyfile(files.task_log, output_task_log(output_dir))
    except OSError as error:
        log.warning(f"job #{num}: could not copy the task log to {output_dir}: {error}")
