"""Helpers for the flow_backend tests (imported as ``from flow_helpers import ...``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def run_flow_cli(
    *args: str, timeout: float = 60, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the ``flow`` CLI in a separate Python process (environment inherited)."""
    result = subprocess.run(
        [sys.executable, "-m", "flow_backend.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"flow {' '.join(args)} failed: {result.stderr}")
    return result


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    """Wait until ``path`` exists with content and return it."""
    wait_for(lambda: path.exists() and path.read_text().strip() != "", timeout, str(path))
    return path.read_text()
