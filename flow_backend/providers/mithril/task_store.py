"""What stays on this machine of a Mithril task: the bid it placed, its final record and its log.

``FLOW_HOME/mithril/tasks/<bid id>/placed.json`` (the record at submit: the API's reads lag a new
bid, so any process can tell a bid this machine just placed from one that does not exist),
``record.json`` and ``output.log``. The API forgets exit codes (it never had them) and the
instance is gone after the bid is cancelled, so any process (``flow status``, ``flow logs``) reads
the outcome from here. No secret is written.
"""

from __future__ import annotations

import os
import tempfile
import time
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

    def save(self, record: TaskRecord, file: str = "record.json") -> None:
        """Write the record atomically (``file``: ``record.json``, the final one, by default)."""
        folder = self.folder(record.task_id)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
            handle.write(record.model_dump_json(indent=2))
        os.replace(handle.name, folder / file)

    def load(self, task_id: str, file: str = "record.json") -> TaskRecord | None:
        """The saved final record, if the task ended and was collected (or another ``file``)."""
        path = self.folder(task_id) / file
        try:
            return TaskRecord.model_validate_json(path.read_text())
        except (OSError, pydantic.ValidationError):
            return None

    def save_placed(self, record: TaskRecord) -> None:
        """Remember that this machine placed the bid of ``record`` (its record at submit)."""
        self.save(record, "placed.json")

    def placed(self, task_id: str) -> TaskRecord | None:
        """The record this machine saved when it placed the bid, if it did."""
        return self.load(task_id, "placed.json")

    def placed_since(self, seconds: float) -> list[str]:
        """Ids of the bids placed here in the last ``seconds`` that have no final record yet,
        newest first."""
        try:
            folders = list(self.root.iterdir())
        except OSError:
            return []
        now = time.time()
        ages = {}
        for folder in folders:
            try:
                age = now - (folder / "placed.json").stat().st_mtime
            except OSError:
                continue
            if age < seconds and not (folder / "record.json").exists():
                ages[folder.name] = age
        return sorted(ages, key=ages.__getitem__)

    def placed_age(self, task_id: str) -> float | None:
        """Seconds since this machine placed the bid (by this machine's clock), or None."""
        try:
            return max(0.0, time.time() - (self.folder(task_id) / "placed.json").stat().st_mtime)
        except OSError:
            return None

    def log(self, task_id: str) -> str | None:
        """The collected log, if any."""
        try:
            return self.log_path(task_id).read_text(errors="replace")
        except OSError:
            return None
