"""One JSON file per task under a folder: what the ssh and slurm providers remember on local disk.

Any process with the same FLOW_HOME reads the same files. Writes are atomic (a reader sees the old
file or the whole new one), and a stored ended task is never replaced by a live record of it (a
slower process must not bring a finished task back to life).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from flow_backend.errors import TaskNotFoundError
from flow_backend.models import TaskRecord

__all__ = ["RecordFiles"]


S = TypeVar("S", bound=BaseModel)


class RecordFiles(Generic[S]):
    """The state files of one provider's tasks.

    Args:
        folder: Where the ``<task_id>.json`` files live (created).
        model: The state model (a pydantic model with a ``record: TaskRecord`` field).
        provider: The provider's name, for the not-found message.
    """

    def __init__(self, folder: Path, model: type[S], provider: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._model = model
        self._provider = provider

    def path(self, task_id: str) -> Path:
        """The file of a task."""
        return self.folder / f"{task_id}.json"

    def load(self, task_id: str) -> S:
        """The stored state of a task.

        Raises:
            TaskNotFoundError: No such task in this FLOW_HOME.
        """
        path = self.path(task_id)
        if "/" in task_id or not path.is_file():
            raise TaskNotFoundError.of(
                task_id,
                f"no {self._provider} task with id {task_id!r} in {self.folder}",
                hint="List tasks with `flow status`; check FLOW_HOME and the provider",
            )
        return self._model.model_validate_json(path.read_text())

    def save(self, state: S) -> S:
        """Write ``state`` atomically unless the stored one has ended and ``state`` has not.

        Returns:
            What is stored now (the stored ended state when it won).
        """
        path = self.path(_record(state).task_id)
        if path.is_file():
            try:
                stored = self._model.model_validate_json(path.read_text())
            except (OSError, ValueError):
                stored = None
            if (
                stored is not None
                and _record(stored).status.is_terminal
                and not _record(state).status.is_terminal
            ):
                return stored
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            handle.write(state.model_dump_json(indent=1))
        os.replace(tmp, path)
        return state

    def all(self) -> list[S]:
        """Every stored state (unreadable files are skipped)."""
        states = []
        for path in self.folder.glob("*.json"):
            try:
                states.append(self._model.model_validate_json(path.read_text()))
            except (OSError, ValueError, json.JSONDecodeError):
                continue
        return states


def _record(state: BaseModel) -> TaskRecord:
    record = state.record  # type: ignore[attr-defined]
    assert isinstance(record, TaskRecord)
    return record
