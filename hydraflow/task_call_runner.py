"""Task side of a pickled call run as a Flow task, and how any task writes its outcome.

``python -m hydraflow.task_call_runner SPEC RESULT [HOLD_SECONDS]`` loads the cloudpickled call in
``SPEC`` (``fn``, ``kwargs``, ``what`` names it in messages, ``make_dirs``), runs it and writes its
outcome to ``RESULT``: ``{"value": ...}``, or ``{"error": ...}`` with the task's traceback as a note
on the exception. On a host that does not share files with the launcher, it then waits up to
``HOLD_SECONDS`` for the launcher's ``collected`` mark beside ``RESULT`` (the task, and the
instance it runs on, stay until the outcome and the files have come home).

Stdlib and cloudpickle only: the launcher's job runner (which runs once per job) takes
:func:`write_atomic`, :func:`portable_error` and :func:`hold_until_collected` from here.
Exit status: 0 when the call returned, 1 when it raised (an outcome is written in both cases).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import Any

COLLECTED_MARK = "collected"
HOLD_SECONDS = 1800  # a task whose launcher is gone stops waiting after this long


class UnpicklableValue(TypeError):
    """The call returned a value that cannot be pickled, so it cannot travel home."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that a reader sees the whole file or none (launcher and task side)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def portable_error(error: BaseException) -> BaseException:
    """``error`` with its traceback as a note, made picklable if it is not."""
    trace = "".join(traceback.format_exception(error))
    try:
        error.add_note(f"Traceback in the task:\n{trace.rstrip()}")
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        portable = RuntimeError(f"{type(error).__name__}: {error}")
        portable.add_note(f"Traceback in the task:\n{trace.rstrip()}")
        return portable


def collected_mark(result_path: Path | str) -> str:
    """The mark the launcher writes beside ``result_path`` once the outcome is home."""
    return str(Path(result_path).with_name(COLLECTED_MARK))


def hold_until_collected(result_path: Path, seconds: float) -> None:
    """Wait (at most ``seconds``) until the launcher has fetched the outcome and written its mark."""
    mark = Path(collected_mark(result_path))
    deadline = time.monotonic() + seconds
    while seconds > 0 and not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def outcome_of(spec: dict[str, Any]) -> tuple[bytes, int]:
    """Run the call in ``spec``; its pickled outcome and the exit status."""
    import cloudpickle

    try:
        value = spec["fn"](**spec["kwargs"])
    except BaseException as error:
        return cloudpickle.dumps({"error": portable_error(error)}), 1
    try:
        return cloudpickle.dumps({"value": value}), 0
    except Exception as error:
        unpicklable = UnpicklableValue(
            f"{spec.get('what', 'The call')} runs as a Flow task and returned a value that cannot "
            f"be pickled ({type(value).__name__}: {type(error).__name__}: {error})"
        )
        return cloudpickle.dumps({"error": unpicklable}), 1


def run(spec_path: Path, result_path: Path, hold_seconds: float = 0) -> int:
    """Run the call in ``spec_path``, write its outcome to ``result_path``; the exit status."""
    import cloudpickle

    spec = cloudpickle.loads(spec_path.read_bytes())
    for folder in spec.get("make_dirs", ()):
        Path(folder).mkdir(parents=True, exist_ok=True)
    blob, status = outcome_of(spec)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(result_path, blob)
    hold_until_collected(result_path, hold_seconds)
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m hydraflow.task_call_runner SPEC RESULT [HOLD_SECONDS]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m hydraflow.task_call_runner SPEC RESULT [HOLD_SECONDS]")
        return 2
    hold = float(args[2]) if len(args) == 3 else 0
    return run(Path(args[0]), Path(args[1]), hold)


if __name__ == "__main__":
    sys.exit(main())
