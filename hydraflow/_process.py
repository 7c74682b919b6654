"""Who launched a sweep, and whether that process still lives: the ``hydraflow.launcher`` tag.

A sweep's parent run records the launching process as ``host boot pid start`` (the kernel's boot
id and the process's start tick make a reused pid or a rebooted machine tell the truth). Asking the
operating system is the only liveness test: no heartbeat, no guess by time.
"""

from __future__ import annotations

import os
import socket
from enum import Enum
from pathlib import Path

__all__ = ["Liveness", "process_liveness", "this_process"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class Liveness(Enum):
    """What the operating system says about a recorded process."""

    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"  # another machine (or a record we cannot read): not ours to judge


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return "-"


def _start_tick(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "-"
    return stat.rsplit(")", 1)[1].split()[19]


def this_process() -> str:
    """The identity of the calling process, as stored in the ``hydraflow.launcher`` tag."""
    pid = os.getpid()
    return f"{socket.gethostname()} {_boot_id()} {pid} {_start_tick(pid)}"


def process_liveness(identity: str | None) -> Liveness:
    """Whether the process recorded as ``identity`` (:func:`this_process`) is still running.

    ``UNKNOWN`` when it ran on another host or the record is missing or malformed.
    """
    parts = (identity or "").split()
    if len(parts) != 4 or not parts[2].isdigit():
        return Liveness.UNKNOWN
    host, boot, pid_text, tick = parts
    if host != socket.gethostname():
        return Liveness.UNKNOWN
    if boot != "-" and _boot_id() not in ("-", boot):
        return Liveness.GONE  # the machine rebooted since
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Liveness.GONE
    except PermissionError:
        pass  # exists, owned by someone else
    if tick != "-" and _start_tick(pid) not in ("-", tick):
        return Liveness.GONE  # the pid was reused by another process
    if _is_zombie(pid):
        return Liveness.GONE
    return Liveness.ALIVE


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
