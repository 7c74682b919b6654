"""Reading a task's log file: the last lines, or following it as it grows."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["follow", "follow_chunks", "read_tail"]

_BLOCK = 64 * 1024


def read_tail(path: Path, tail: int | None) -> str:
    """The whole log, or its last ``tail`` lines (read backwards, so big logs stay cheap)."""
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        if tail is None:
            return handle.read().decode(errors="replace")
        if tail <= 0:
            return ""
        end = handle.seek(0, os.SEEK_END)
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= tail:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
        lines = data.splitlines(keepends=True)
        return b"".join(lines[-tail:]).decode(errors="replace")


def follow(path: Path, has_ended: Callable[[], bool], poll_seconds: float = 0.1) -> Iterator[str]:
    """Yield lines as they are written until the task ends and everything was read."""

    def read_from(offset: int) -> bytes:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except FileNotFoundError:
            return b""

    return follow_chunks(read_from, has_ended, poll_seconds)


def follow_chunks(
    read_from: Callable[[int], bytes], has_ended: Callable[[], bool], poll_seconds: float
) -> Iterator[str]:
    """Yield the lines of a growing log whose bytes from an offset ``read_from`` returns, until
    ``has_ended()`` and everything was read (checked before reading: the last output is kept)."""
    position = 0
    pending = b""
    while True:
        ended = has_ended()
        chunk = read_from(position)
        position += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace") + "\n"
        if ended and not chunk:
            if pending:
                yield pending.decode(errors="replace")
            return
        if not chunk:
            time.sleep(poll_seconds)
