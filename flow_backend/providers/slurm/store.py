"""What the slurm provider remembers about its tasks: one JSON file per task under
``<FLOW_HOME>/slurm/state/``, so ``flow status/logs/cancel`` work from any process.

SLURM is the truth while a job is live; the record is kept here so a task's end survives SLURM
forgetting the job (``MinJobAge``). Values of secret environment variables are never stored.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from flow_backend.models import TaskRecord
from flow_backend.providers.record_files import RecordFiles

__all__ = ["SlurmTaskState", "state_files"]


class SlurmTaskState(BaseModel):
    """A task's record plus where SLURM and the login node have it.

    Attributes:
        record: The provider-neutral record.
        job_id: SLURM's job id (``123``, or ``123_4`` for an element of array job 123).
        task_dir: The task's folder on the login node (scripts, ``output.log``, ``exit_code``).
        workdir: Folder the command runs in.
        cancel_requested: ``stop()``/``flow cancel`` asked for it (SLURM's CANCELLED is then ours).
    """

    model_config = ConfigDict(extra="forbid")

    record: TaskRecord
    job_id: str
    task_dir: str
    workdir: str
    cancel_requested: bool = False

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self.record.task_id

    @property
    def parent_job(self) -> str:
        """The job id ``squeue --jobs`` takes for it (an array's own id for its elements)."""
        return self.job_id.split("_")[0]


def state_files(home: Path) -> RecordFiles[SlurmTaskState]:
    """The slurm provider's task files under ``<home>/slurm/state``."""
    return RecordFiles(home / "slurm" / "state", SlurmTaskState, "slurm")
