"""Where a job's files live: one place for the launcher, the job runner and (later) remote downloads.

Everything the launcher and the task exchange sits in the job's own output folder
(``hydra.sweep.dir/<subdir>``), so a remote provider only has to download that folder to bring the
result, the job log and ``.hydra/`` back::

    <sweep dir>/<subdir>/
        .hydra/               Hydra's own record (written by the task)
        <job name>.log        the job log (written by the task)
        flow-task.log         the task's captured stdout/stderr (written by the launcher)
        .flow/spec.pkl        what to run (written by the launcher)
        .flow/result.pkl      the pickled JobReturn (written by the task)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC_NAME = "spec.pkl"
RESULT_NAME = "result.pkl"
FILES_DIR = ".flow"
TASK_LOG_NAME = "flow-task.log"
RUNNER_MODULE = "hydra_plugins.hydraflow_plugins._job_runner"


@dataclass(frozen=True)
class JobFiles:
    """The files of one job, all under its output folder."""

    output_dir: Path

    @property
    def spec(self) -> Path:
        return self.output_dir / FILES_DIR / SPEC_NAME

    @property
    def result(self) -> Path:
        return self.output_dir / FILES_DIR / RESULT_NAME

    @property
    def task_log(self) -> Path:
        return self.output_dir / TASK_LOG_NAME


def result_path_for(spec_path: Path) -> Path:
    """The result file written next to ``spec_path`` (task side)."""
    return spec_path.with_name(RESULT_NAME)
