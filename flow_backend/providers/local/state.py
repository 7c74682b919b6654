"""The on-disk state of one local task, readable and writable by any process.

Two files per task in ``FLOW_HOME/tasks/`` (plus two rare ones)::

    <task_id>.jsonl        an append-only record of events, one JSON object per line:
                           {"spec": ...}  what was started: name, command, pids, GPUs (never env values)
                           {"exit": [rank, code]}  written by the shell wrapper when a rank ends
                           {"stop": ...}  a stop request: the status to end in and why
                           {"final": ...} the final state, when it is more than the exit codes say
    <task_id>.log          stdout and stderr of every rank, interleaved as written
    <task_id>.config.json  the TaskConfig while the task waits for GPUs (mode 0600), without the
                           values of secret env vars (those stay in the submitter's memory)
    <task_id>.claim        taken by the one process that starts (or cancels) a pending task

Appending a line to an existing file is atomic for small writes and creates no directory entry, so a
task costs two file creations: this record (by the submitting process) and its log (by the task).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flow_backend.models import TaskStatus, utc_now

__all__ = [
    "FinalState",
    "StopRequest",
    "TaskFiles",
    "TaskSnapshot",
    "TaskSpec",
    "utc_now",
    "write_atomic",
]

EVENTS_SUFFIX = ".jsonl"


class TaskSpec(BaseModel):
    """What a ``spec`` event holds (the last one counts)."""

    model_config = ConfigDict(extra="ignore")

    task_id: str
    name: str
    instance_type: str
    num_instances: int = 1
    command: str
    working_dir: str
    created_at: datetime
    started_at: datetime | None = None
    processes: list[int] = Field(default_factory=list)
    gpus: list[str] = Field(default_factory=list)
    max_run_time_hours: float | None = None
    timeout_in_wrapper: bool = False
    volumes: dict[str, str] = Field(default_factory=dict)
    ports: list[int] = Field(default_factory=list)
    env_keys: list[str] = Field(default_factory=list)
    secret_env_names: list[str] = Field(default_factory=list)
    owner_pid: int | None = None
    notes: list[str] = Field(default_factory=list)
    log_notes: list[str] = Field(default_factory=list)


class StopRequest(BaseModel):
    """What a ``stop`` event holds."""

    status: TaskStatus
    message: str
    requested_at: datetime = Field(default_factory=utc_now)


class FinalState(BaseModel):
    """What a ``final`` event holds."""

    status: TaskStatus
    exit_code: int | None = None
    message: str | None = None
    ended_at: datetime = Field(default_factory=utc_now)
    from_exit_codes_only: bool = Field(default=False, exclude=True)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


@dataclass
class TaskSnapshot:
    """Everything one read of a task's record says."""

    spec: TaskSpec | None = None
    exit_codes: dict[int, int] = field(default_factory=dict)
    stop: StopRequest | None = None
    final: FinalState | None = None
    modified_at: datetime | None = None


class TaskFiles:
    """Paths, reads and appends of one task's files."""

    def __init__(self, tasks_dir: Path, task_id: str) -> None:
        self.task_id = task_id
        base = os.path.join(tasks_dir, task_id)
        self.events_path = Path(base + EVENTS_SUFFIX)
        self.log_path = Path(base + ".log")
        self.config_path = Path(base + ".config.json")
        self._claim_path = base + ".claim"

    def exists(self) -> bool:
        """Whether the task's record exists."""
        return self.events_path.exists()

    # -- reads ---------------------------------------------------------------------------------
    def snapshot(self) -> TaskSnapshot:
        """Read the record once and fold its events."""
        snapshot = TaskSnapshot()
        try:
            with open(self.events_path, "rb") as handle:
                data = handle.read()
                modified = os.fstat(handle.fileno()).st_mtime
        except OSError:
            return snapshot
        snapshot.modified_at = datetime.fromtimestamp(modified, UTC)
        spec_data: dict[str, Any] | None = None
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash, or still being written
            if not isinstance(event, dict):
                continue
            if "exit" in event:
                rank, code = event["exit"]
                snapshot.exit_codes.setdefault(int(rank), int(code))
            elif "spec" in event:
                spec_data = event["spec"]
            elif "stop" in event and snapshot.stop is None:
                snapshot.stop = StopRequest.model_validate(event["stop"])
            elif "final" in event and snapshot.final is None:
                snapshot.final = FinalState.model_validate(event["final"])
        if spec_data is not None:
            snapshot.spec = TaskSpec.model_validate(spec_data)
        return snapshot

    def read_spec(self) -> TaskSpec | None:
        """The latest spec, if the record has one."""
        return self.snapshot().spec

    def read_config(self) -> dict[str, Any] | None:
        """The full config of a task waiting for GPUs."""
        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- writes --------------------------------------------------------------------------------
    def _append(self, key: str, model: BaseModel) -> None:
        line = f'{{"{key}":{model.model_dump_json()}}}\n'.encode()
        fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def write_spec(self, spec: TaskSpec) -> None:
        """Record (a new version of) the spec."""
        self._append("spec", spec)

    def write_stop(self, request: StopRequest) -> None:
        """Record a stop request."""
        self._append("stop", request)

    def write_final(self, final: FinalState) -> None:
        """Record the final state."""
        self._append("final", final)

    def write_config(self, config_json: str) -> None:
        """Keep the config of a task that waits for GPUs (only the owner can read it; no secrets)."""
        write_atomic(self.config_path, config_json, mode=0o600)

    def claim_start(self) -> bool:
        """Claim the right to start (or cancel) a pending task; only one process gets it."""
        try:
            os.close(os.open(self._claim_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def append_log(self, line: str) -> None:
        """Append one ``[flow]`` note to the task's log."""
        with open(self.log_path, "a") as handle:
            handle.write(f"[flow] {line}\n")
