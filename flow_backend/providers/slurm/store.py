"""What the slurm provider remembers about its tasks: one JSON file per task under
``<FLOW_HOME>/slurm/state/``, so ``flow status/logs/cancel`` work from any process.

SLURM is the truth while a job is live; the record is kept here so a task's end survives SLURM
forgetting the job (``MinJobAge``). Values of secret environment variables are never stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from flow_backend.errors import TaskNotFoundError
from flow_backend.models import TaskRecord

__all__ = ["SlurmTaskState", "StateStore"]


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


class StateStore:
    """Task state files under ``<home>/slurm/state``.

    Args:
        home: FLOW_HOME.
    """

    def __init__(self, home: Path) -> None:
        self.dir = home / "slurm" / "state"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str) -> Path:
        return self.dir / f"{task_id}.json"

    def load(self, task_id: str) -> SlurmTaskState:
        """The stored state of a task.

        Raises:
            TaskNotFoundError: No such task in this FLOW_HOME.
        """
        path = self._path(task_id)
        if "/" in task_id or not path.is_file():
            raise TaskNotFoundError(
                f"no slurm task with id {task_id!r} in {self.dir}",
                field="task_id",
                value=task_id,
                hint="List tasks with `flow status`; check FLOW_HOME and the provider",
            )
        return SlurmTaskState.model_validate_json(path.read_text())

    def save(self, state: SlurmTaskState) -> SlurmTaskState:
        """Write a state atomically; a stored terminal record is never replaced by another.

        Returns:
            What is stored now (the stored terminal state when it won).
        """
        path = self._path(state.task_id)
        with contextlib.suppress(OSError, ValueError):
            stored = SlurmTaskState.model_validate_json(path.read_text())
            if stored.record.status.is_terminal:
                return stored
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            handle.write(state.model_dump_json(indent=1))
        os.replace(tmp, path)
        return state

    def all(self) -> list[SlurmTaskState]:
        """Every stored task (unreadable files are skipped)."""
        states = []
        for path in self.dir.glob("*.json"):
            try:
                states.append(SlurmTaskState.model_validate_json(path.read_text()))
            except (OSError, ValueError, json.JSONDecodeError):
                continue
        return states
