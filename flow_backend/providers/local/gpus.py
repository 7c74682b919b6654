"""GPUs of this machine and their hand-out to local tasks, shared by every process via a lock file."""

from __future__ import annotations

import fcntl
import json
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flow_backend.providers.local.state import write_atomic

__all__ = ["GpuPool", "detect_gpus", "warn_cpu_once"]

_log = logging.getLogger("flow_backend.local")
_warned_cpu = False


def detect_gpus(configured: list[str] | None) -> list[str]:
    """GPU indices to hand out: the configured ones, else those ``nvidia-smi -L`` lists."""
    if configured is not None:
        return configured
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return re.findall(r"^GPU (\d+):", listing, flags=re.MULTILINE)


def warn_cpu_once(instance_type: str) -> str:
    """Tell the user (once per process) that GPU tasks run on the CPU here; returns the note."""
    global _warned_cpu
    note = f"no GPUs found on this machine: instance type {instance_type!r} runs on the CPU"
    if not _warned_cpu:
        _warned_cpu = True
        _log.warning("%s (local provider)", note)
    return note


class GpuPool:
    """Which task holds which GPU, in ``FLOW_HOME/gpu-allocations.json`` under an exclusive lock.

    Args:
        home: The FLOW_HOME folder.
        gpus: The GPU indices of this machine.
        has_ended: Tells whether a holder task has ended (its GPUs are then free again).
    """

    def __init__(self, home: Path, gpus: list[str], has_ended: Callable[[str], bool]) -> None:
        self.gpus = gpus
        self._path = home / "gpu-allocations.json"
        self._lock_path = home / "gpu-allocations.lock"
        self._has_ended = has_ended
        self._guard = threading.RLock()
        self._held: dict[str, list[str]] | None = None

    @contextmanager
    def _locked(self) -> Iterator[dict[str, list[str]]]:
        """The holders, under the file lock; re-entrant, since ``has_ended`` may release GPUs."""
        with self._guard:
            if self._held is not None:  # nested in this thread: same lock, same dict
                yield self._held
                return
            with open(self._lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    try:
                        text = self._path.read_text()
                        self._held = json.loads(text)
                    except (OSError, ValueError):
                        text, self._held = "", {}
                    yield self._held
                    if json.dumps(self._held) != text:
                        write_atomic(self._path, json.dumps(self._held))
                finally:
                    self._held = None
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def allocate(self, task_id: str, count: int) -> list[str] | None:
        """Take ``count`` free GPUs for ``task_id``; ``None`` while too few are free."""
        with self._locked() as holders:
            for holder in [h for h in holders if h != task_id]:
                if self._has_ended(holder):
                    holders.pop(holder, None)  # has_ended may have released it already
            if task_id in holders:
                return holders[task_id]
            busy = {gpu for held in holders.values() for gpu in held}
            free = [gpu for gpu in self.gpus if gpu not in busy]
            if len(free) < count:
                return None
            holders[task_id] = free[:count]
            return holders[task_id]

    def release(self, task_id: str) -> None:
        """Give back the GPUs of an ended task."""
        with self._locked() as holders:
            holders.pop(task_id, None)
