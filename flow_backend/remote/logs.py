"""Read a remote task's ``output.log``: the last lines, or every line as it is written."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator

from fabric import Connection

from flow_backend.remote.connection import exec_command
from flow_backend.remote.detached import _STATUS_SCRIPT, OUTPUT_LOG

__all__ = ["follow_logs", "tail_logs"]

_CHUNK_BYTES = 4 << 20


def tail_logs(conn: Connection, task_dir: str, lines: int | None = None) -> str:
    """The task's output so far (the last ``lines`` lines when given); ``""`` before it starts.

    Args:
        conn: Connection to the host.
        task_dir: The task's remote dir.
        lines: How many lines from the end; ``None`` for all.

    Returns:
        The log text.
    """
    log = shlex.quote(f"{task_dir.rstrip('/')}/{OUTPUT_LOG}")
    reader = f"cat {log}" if lines is None else f"tail -n {max(0, int(lines))} {log}"
    result = exec_command(conn, f"[ -f {log} ] && {reader} || true")
    return result.text


def follow_logs(conn: Connection, task_dir: str, *, poll_interval: float = 0.5) -> Iterator[str]:
    """Yield the task's log lines (each ending in ``"\\n"``) from the start until the task ends.

    Each poll is one round trip that reads the task's state *before* the new bytes, so the lines
    read after the task was seen ending are all there is: nothing written last is lost.

    Args:
        conn: Connection to the host.
        task_dir: The task's remote dir.
        poll_interval: Seconds between polls while nothing new arrives.

    Yields:
        Log lines in order.
    """
    d = task_dir.rstrip("/")
    log = shlex.quote(f"{d}/{OUTPUT_LOG}")
    offset = 0
    pending = b""
    while True:
        script = (
            _STATUS_SCRIPT
            + f"flow_status {shlex.quote(d)}\n"
            + f"[ -f {log} ] && tail -c +{offset + 1} {log} | head -c {_CHUNK_BYTES}\n"
        )
        result = exec_command(conn, "bash -s", stdin=script.encode())
        header, _, data = result.stdout.partition(b"\n")
        fields = header.decode(errors="replace").split("\t")
        state = fields[2] if len(fields) == 6 else "missing"
        offset += len(data)
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace") + "\n"
        if len(data) == _CHUNK_BYTES:
            continue
        if state in ("exited", "lost", "missing"):
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return
        if not data:
            time.sleep(poll_interval)
