"""The providers' per-task JSON files: atomic, shared across processes, an ended task stays ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_backend.errors import TaskNotFoundError
from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.slurm.store import SlurmTaskState, state_files


def _state(status: TaskStatus) -> SlurmTaskState:
    record = TaskRecord(task_id="slurm-1", name="t", provider="slurm", instance_type="cpu")
    record.status = status
    return SlurmTaskState(record=record, job_id="7", task_dir="/x", workdir="/y")


def test_an_ended_task_is_never_brought_back_to_life(tmp_path: Path) -> None:
    files = state_files(tmp_path)
    files.save(_state(TaskStatus.RUNNING))
    assert files.save(_state(TaskStatus.FAILED)).record.status is TaskStatus.FAILED
    kept = files.save(_state(TaskStatus.RUNNING))  # a slower process's stale view
    assert kept.record.status is TaskStatus.FAILED
    assert state_files(tmp_path).load("slurm-1").record.status is TaskStatus.FAILED
    assert [s.task_id for s in files.all()] == ["slurm-1"]
    with pytest.raises(TaskNotFoundError, match="no slurm task with id 'nope'"):
        files.load("nope")
    with pytest.raises(TaskNotFoundError):
        files.load("../slurm-1")
