"""Starting task processes and finding, checking and signalling them later from any process.

A task process is ``/bin/sh`` running a short wrapper in a new session: it sends its output to the
task's log, runs the user's command and appends the exit code to the task's record, so any process
can read the outcome, with no Python interpreter in the task's path. The session id (= the wrapper's
pid) names the whole process tree, even the parts that moved to process groups of their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

__all__ = [
    "end_sessions",
    "is_alive",
    "launch",
    "session_members",
    "signal_tree",
    "wait_for_exit",
]

# The wrapper's arguments: command, task record, log file, rank, grace, time limit, then K=V pairs
# to export (the rest of the environment is inherited, which spares encoding all of it for every
# task). The wrapper opens the log itself and appends the exit code to the record (see state.py).
_PROLOGUE = (
    "__flow_cmd=$1 __flow_record=$2 __flow_rank=$4 __flow_grace=$5 __flow_limit=$6; "
    'exec </dev/null >>"$3" 2>&1; shift 6; '
    'for __flow_kv; do export "$__flow_kv"; done; unset __flow_kv; set --; '
    '__flow_done() { printf \'{"exit":[%s,%s]}\\n\' "$__flow_rank" "$1" >>"$__flow_record"; }; '
)
# The EXIT trap also catches the user's `exit N`; it costs no extra process for shell builtins
# (dash forks once for an external command either way).
_WRAPPER = _PROLOGUE + "trap '__flow_done $?' EXIT; eval \"$__flow_cmd\""
# For commands that `exec` (the trap would be lost) or set their own traps: a subshell runs them.
_WRAPPER_SUBSHELL = (
    _PROLOGUE + '(eval "$__flow_cmd"); __flow_c=$?; __flow_done $__flow_c; exit $__flow_c'
)
_NEEDS_SUBSHELL = re.compile(r"\b(exec|trap)\b")
# coreutils `timeout` enforces the time limit: SIGTERM to the command's process group, then SIGKILL.
_WRAPPER_TIMED = _PROLOGUE + (
    'timeout -k "$__flow_grace" "$__flow_limit" /bin/sh -c "$__flow_cmd"; __flow_c=$?; '
    "__flow_done $__flow_c; exit $__flow_c"
)


class Child(Protocol):
    """A task process this process started (``subprocess.Popen``, ``forked.ForkedTask``)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


#: A process with the task's pid that started this long before the task is another process.
_PID_REUSE_WINDOW_SECONDS = 120.0

TIME_LIMIT_EXIT_CODES = (124, 128 + 9)


@cache
def has_timeout_binary() -> bool:
    """Whether coreutils ``timeout`` is available to enforce time limits inside the task."""
    return shutil.which("timeout") is not None


def launch(
    command: str,
    *,
    record_file: Path,
    log_file: Path,
    rank: int,
    cwd: str,
    env: dict[str, str],
    time_limit_seconds: float | None = None,
    grace_seconds: float = 10.0,
) -> subprocess.Popen[bytes]:
    """Start one rank of ``command`` under the wrapper in a new session.

    Args:
        record_file: The task's event record; the wrapper appends the exit code to it.
        log_file: Where stdout and stderr are appended.
        env: Variables to set on top of this process's environment.
    """
    limits = ["", ""]
    if time_limit_seconds is not None and has_timeout_binary():
        script = _WRAPPER_TIMED
        limits = [f"{max(grace_seconds, 0.1):g}", f"{time_limit_seconds:.3f}"]
    elif _NEEDS_SUBSHELL.search(command):
        script = _WRAPPER_SUBSHELL
    else:
        script = _WRAPPER
    pairs = [f"{key}={value}" for key, value in env.items()]
    files = [str(record_file), str(log_file), str(rank)]
    return subprocess.Popen(
        ["/bin/sh", "-c", script, "flow-task", command, *files, *limits, *pairs],
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses).
    return data[data.rfind(b")") + 2 :].decode().split()


@cache
def _boot_time() -> float:
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _started_at(fields: list[str]) -> float:
    """Wall-clock start of a process from its ``/proc/<pid>/stat`` fields."""
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def is_alive(pid: int, launched_at: float | None = None) -> bool:
    """Whether the process still runs (zombies count as gone).

    Args:
        pid: The process id.
        launched_at: When the task started it (epoch seconds); a process with this pid that
            started at another time is a reused pid, so the task's process is gone.
    """
    if sys.platform.startswith("linux"):
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        if launched_at is None:
            return True
        started = _started_at(fields)
        return launched_at - _PID_REUSE_WINDOW_SECONDS <= started <= launched_at + 2.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_members(session_id: int) -> list[int]:
    """Pids of live (non-zombie) processes in the session, or of the process group off Linux."""
    if not sys.platform.startswith("linux"):
        try:
            os.killpg(session_id, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [session_id]
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if (
            fields
            and len(fields) > 3
            and fields[0] not in ("Z", "X")
            and int(fields[3]) == session_id
        ):
            members.append(int(entry.name))
    return members


def signal_tree(session_id: int, sig: signal.Signals) -> int:
    """Send ``sig`` to every process of the task's session; returns how many were signalled.

    Processes that moved to their own process group (``timeout`` does) are still in the session.
    """
    count = 0
    try:
        os.killpg(session_id, sig)
        count += 1
    except (ProcessLookupError, PermissionError):
        pass
    for pid in session_members(session_id):
        try:
            os.kill(pid, sig)
            count += 1
        except (ProcessLookupError, PermissionError):
            pass
    return count


def _wait_until_gone(sessions: Sequence[int], seconds: float, children: Sequence[Child]) -> bool:
    deadline = time.monotonic() + seconds
    pause = 0.005
    while True:
        for child in children:
            child.poll()  # reap our own children, so they do not linger as zombies
        if not any(session_members(session) for session in sessions):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def end_sessions(
    sessions: Sequence[int], grace_seconds: float, children: Sequence[Child] = ()
) -> None:
    """SIGTERM every process of the sessions, SIGKILL what is left after ``grace_seconds``."""
    for session in sessions:
        signal_tree(session, signal.SIGTERM)
    if not _wait_until_gone(sessions, grace_seconds, children):
        for session in sessions:
            signal_tree(session, signal.SIGKILL)
        _wait_until_gone(sessions, 5.0, children)


def wait_for_exit(child: Child, timeout: float) -> None:
    """Block until ``child`` exits or ``timeout`` passes, waking at once when it exits.

    Uses a pidfd where the OS has them (Linux 5.3+), else ``Popen.wait``'s short sleeps.
    """
    try:
        pidfd = os.pidfd_open(child.pid)
    except (AttributeError, OSError):  # no pidfds here, or the child is already gone
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.0, timeout))
        return
    try:
        select.select([pidfd], [], [], max(0.0, timeout))
    finally:
        os.close(pidfd)
