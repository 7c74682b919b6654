"""The on-disk layout of one local task, readable and writable by any process.

``FLOW_HOME/tasks/<task_id>/``::

    task.json     what was started: name, command, ranks' pids, GPUs, limits (never env values)
    config.json   the full TaskConfig while the task waits for GPUs (mode 0600; removed at start)
    output.log    stdout and stderr of every rank, interleaved as written
    exit-<rank>   the exit code, written by the shell wrapper when the command ends
    stop.json     a stop request: the status to end in and why (cancel, time limit)
    final.json    the final status, exit code and message, once known
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from flow_backend.models import TaskStatus

__all__ = ["FinalState", "StopRequest", "TaskFiles", "TaskSpec", "utc_now"]

_M = TypeVar("_M", bound=BaseModel)


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class TaskSpec(BaseModel):
    """What ``task.json`` holds."""

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
    notes: list[str] = Field(default_factory=list)
    log_notes: list[str] = Field(default_factory=list)


class StopRequest(BaseModel):
    """What ``stop.json`` holds."""

    status: TaskStatus
    message: str
    requested_at: datetime = Field(default_factory=utc_now)


class FinalState(BaseModel):
    """What ``final.json`` holds."""

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


class TaskFiles:
    """Paths and reads/writes of one task's folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def task_id(self) -> str:
        return self.folder.name

    @property
    def spec_path(self) -> Path:
        return self.folder / "task.json"

    @property
    def config_path(self) -> Path:
        return self.folder / "config.json"

    @property
    def log_path(self) -> Path:
        return self.folder / "output.log"

    @property
    def stop_path(self) -> Path:
        return self.folder / "stop.json"

    @property
    def final_path(self) -> Path:
        return self.folder / "final.json"

    def exit_path(self, rank: int) -> Path:
        return self.folder / f"exit-{rank}"

    # -- reads ---------------------------------------------------------------------------------
    def read_spec(self) -> TaskSpec | None:
        spec = _read_model(self.spec_path, TaskSpec)
        if spec is None and self.spec_path.exists():
            time.sleep(0.01)  # caught it while a new task.json was being written
            spec = _read_model(self.spec_path, TaskSpec)
        return spec

    def read_stop(self) -> StopRequest | None:
        return _read_model(self.stop_path, StopRequest)

    def read_final(self) -> FinalState | None:
        return _read_model(self.final_path, FinalState)

    def read_exit_code(self, rank: int) -> int | None:
        try:
            text = self.exit_path(rank).read_text().strip()
        except OSError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    def ended_at(self, ranks: int) -> datetime | None:
        """When the last of ``ranks`` ranks wrote its exit code."""
        times = []
        for rank in range(ranks):
            try:
                times.append(self.exit_path(rank).stat().st_mtime)
            except OSError:
                continue
        return datetime.fromtimestamp(max(times), UTC) if times else None

    def read_config(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- writes --------------------------------------------------------------------------------
    def write_spec(self, spec: TaskSpec, *, new: bool = False) -> None:
        """Write ``task.json``; a new one directly (one file creation less), else atomically."""
        if not new:
            write_atomic(self.spec_path, spec.model_dump_json())
            return
        fd = os.open(self.spec_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(spec.model_dump_json())

    def write_stop(self, request: StopRequest) -> None:
        write_atomic(self.stop_path, request.model_dump_json())

    def write_final(self, final: FinalState) -> None:
        write_atomic(self.final_path, final.model_dump_json())

    def write_config(self, config_json: str) -> None:
        write_atomic(self.config_path, config_json, mode=0o600)

    def claim_start(self) -> bool:
        """Claim the right to start (or cancel) a pending task; only one process gets it."""
        try:
            os.close(os.open(self.folder / "start.claim", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def append_log(self, line: str) -> None:
        """Append one ``[flow]`` note to the task's log."""
        with open(self.log_path, "a") as handle:
            handle.write(f"[flow] {line}\n")


def _read_model(path: Path, model: type[_M]) -> _M | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return model.model_validate_json(text)
    except ValueError:
        return None
