"""Helpers shared by the launcher tests (importable under a unique name, unlike conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
TRAIN = REPO / "examples" / "train.py"
# Hydra's IntegrationTestSuite's app config for the flow launcher (its hydra_debug/disabled logging)
INTEGRATION_DEFAULTS: list[dict[str, str]] = [
    {"override hydra/launcher": "flow"},
    {"override hydra/hydra_logging": "hydra_debug"},
    {"override hydra/job_logging": "disabled"},
]

RunApp = Callable[..., subprocess.CompletedProcess[str]]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (e.g. a test's tmp_path) or work in
    it: a local worker forked from its launcher has the launcher's command line, and its working
    folder is the launch dir (a job's output folder while a job runs)."""
    found = []
    inside = text.rstrip("/") + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd") + "/"
        except OSError:
            cwd = ""
        if (text in cmdline or cwd.startswith(inside)) and state != "Z":
            found.append(
                f"{cmdline.strip()} (in {cwd})" if text not in cmdline else cmdline.strip()
            )
    return found


def job_runs(tracking_uri: str, experiment: str) -> list[Any]:
    """All runs of ``experiment``: the sweep's parent and its jobs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {tracking_uri}"
    return list(client.search_runs([found.experiment_id], max_results=1000))


def started_tasks() -> list[Any]:
    """Every task the local provider knows in this test's FLOW_HOME."""
    from flow_backend import Flow

    with Flow(provider="local") as flow:
        return flow.list_tasks()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def interrupt(
    proc: subprocess.Popen[str],
    ready: Callable[[], bool],
    what: str,
    sig: signal.Signals = signal.SIGINT,
    timeout: float = 60,
) -> tuple[str, str]:
    """Once ``ready`` holds, send ``sig`` to ``proc`` and return its output when it has exited
    (a process still there at the end is killed, so no test leaves one behind)."""
    try:
        wait_for(ready, 90, what)
        proc.send_signal(sig)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
