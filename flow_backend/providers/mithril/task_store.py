"""What stays on this machine once a Mithril task has ended: its final record and its log.

``FLOW_HOME/mithril/tasks/<bid id>/record.json`` and ``output.log``. The API forgets exit codes
(it never had them) and the instance is gone after the bid is cancelled, so any process (``flow
status``, ``flow logs``) reads the outcome from here. No secret is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pydantic

from flow_backend.models import TaskRecord

__all__ = ["TaskStore"]


class TaskStore:
    """Final records and logs of ended tasks, one folder per bid."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home).expanduser() / "mithril" / "tasks"

    def folder(self, task_id: str) -> Path:
        return self.root / task_id

    def log_path(self, task_id: str) -> Path:
        return self.folder(task_id) / "output.log"

    def save(self, record: TaskRecord) -> None:
        """Write the record atomically."""
        folder = self.folder(record.task_id)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
            handle.write(record.model_dump_json(indent=2))
        os.replace(handle.name, folder / "record.json")

    def load(self, task_id: str) -> TaskRecord | None:
        """The saved final record, if the task ended and was collected."""
        path = self.folder(task_id) / "record.json"
        try:
            return TaskRecord.model_validate_json(path.read_text())
        except (OSError, pydantic.ValidationError):
            return None

    def log(self, task_id: str) -> str | None:
        """The collected log, if any."""
        try:
            return self.log_path(task_id).read_text(errors="replace")
        except OSError:
            return None
