"""What the ssh provider remembers about its tasks, on local disk so other processes see it too.

One JSON file per task under ``<FLOW_HOME>/ssh/tasks/``, and an empty marker per task waiting for a
host under ``waiting/``. Values of secret-looking environment variables (``*_API_KEY``, ``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*``, ...) are never written: only their names. Until the task starts they
live in the memory of the process that submitted it.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ConfigDict, Field

from flow_backend.models import TaskRecord
from flow_backend.providers.record_files import RecordFiles

__all__ = ["NodePlacement", "SSHTaskState", "StateStore"]


class NodePlacement(BaseModel):
    """Where one node (rank) of a task runs.

    Attributes:
        rank: ``FLOW_NODE_RANK`` of the node.
        host: Destination ``user@host:port``.
        task_dir: Absolute remote folder with ``pid``, ``output.log``, ``exit_code``.
        workdir: Absolute remote folder the command runs in.
        gpus: GPU indices given to it (``CUDA_VISIBLE_DEVICES``).
    """

    model_config = ConfigDict(extra="forbid")

    rank: int
    host: str
    task_dir: str
    workdir: str
    gpus: list[str] = Field(default_factory=list)


class SSHTaskState(BaseModel):
    """A task's record plus what the provider needs to find and control it.

    Attributes:
        record: The provider-neutral record.
        command: The shell command line.
        working_dir: The configured working directory (relative to the uploaded code, if any).
        upload_code: Whether ``code_root`` is uploaded.
        code_root: Absolute local folder uploaded.
        gpus_per_node: GPUs each node needs.
        env: The extra environment variables that are not secret.
        secret_env_names: Names of the secret ones (values only in the submitting process).
        max_run_time_hours: Stop the task after this long.
        nodes: Placement per rank, empty while the task waits for hosts.
        owner_pid: Pid of the process that submitted it (it holds the env until placement).
        owner_host: Hostname of that process.
        cancel_requested: A cancel arrived; nodes are being stopped.
    """

    model_config = ConfigDict(extra="forbid")

    record: TaskRecord
    command: str
    working_dir: str | None = None
    upload_code: bool = False
    code_root: str | None = None
    gpus_per_node: int = 0
    env: dict[str, str] = Field(default_factory=dict)
    secret_env_names: list[str] = Field(default_factory=list)
    max_run_time_hours: float | None = None
    nodes: list[NodePlacement] = Field(default_factory=list)
    owner_pid: int
    owner_host: str
    cancel_requested: bool = False

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self.record.task_id


class StateStore:
    """Task state files under ``<home>/ssh`` with a cross-process lock.

    Args:
        home: FLOW_HOME.
    """

    def __init__(self, home: Path) -> None:
        self.root = home / "ssh"
        self.tasks_dir = self.root / "tasks"
        self.waiting_dir = self.root / "waiting"
        self._files = RecordFiles(self.tasks_dir, SSHTaskState, "ssh")
        self.waiting_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "state.lock"
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._handle: IO[str] | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive lock (re-entrant; across threads and processes)."""
        with self._thread_lock:
            if self._depth == 0:
                self._handle = self._lock_path.open("a")
                fcntl.flock(self._handle, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._handle is not None:
                    fcntl.flock(self._handle, fcntl.LOCK_UN)
                    self._handle.close()
                    self._handle = None

    def load(self, task_id: str) -> SSHTaskState:
        """The stored state of a task.

        Raises:
            TaskNotFoundError: No such task in this FLOW_HOME.
        """
        return self._files.load(task_id)

    def save(self, state: SSHTaskState) -> SSHTaskState:
        """Write a state atomically; a stored terminal record is never replaced by a live one.

        Returns:
            What is stored now (the stored terminal state when it won).
        """
        with self.locked():
            return self._files.save(state)

    def all(self) -> list[SSHTaskState]:
        """Every stored task (unreadable files are skipped)."""
        return self._files.all()

    def set_waiting(self, task_id: str, waiting: bool) -> None:
        """Mark (or unmark) a task as waiting for a host."""
        marker = self.waiting_dir / task_id
        if waiting:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def any_waiting(self) -> bool:
        """Whether some task waits for a host (cheap: no state file is read)."""
        return any(self.waiting_dir.iterdir())
