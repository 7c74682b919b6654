"""After a crash the MLflow store tells the truth: no run stays RUNNING once its tasks are gone.

One sweep walks the whole story (a sweep is the expensive part): a live sweep is left alone, the
launcher dies by ``kill -9``, a job's process is killed from outside, ``hydraflow repair`` ends that
job's run only, ``flow cancel --sweep`` ends the rest, and a resume runs exactly the unfinished jobs
under the same parent run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from launcher_helpers import APPS, job_runs, processes_mentioning, started_tasks

APP = APPS / "crash_app.py"
SWEEP = [
    "-m",
    "hydra/launcher=flow",
    "hydra/sweeper=flow",
    "hydra/callbacks=mlflow",
    "hydra.launcher.max_parallel=4",
    "value=1,2,3,4",
]


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(capsys: pytest.CaptureFixture[str], command: str, *args: str) -> tuple[int, str]:
    """Run ``hydraflow ...`` or ``flow ...`` in this process (as their entry points do)."""
    from flow_backend.cli import main as flow_main
    from hydraflow.cli import main as hydraflow_main

    capsys.readouterr()
    code = (hydraflow_main if command == "hydraflow" else flow_main)(list(args))
    return code, capsys.readouterr().out


def _runs() -> tuple[Any, dict[str, list[Any]]]:
    """The sweep's parent run and its job runs by job number (oldest first)."""
    runs = sorted(
        job_runs(os.environ["MLFLOW_TRACKING_URI"], "crash_app"), key=lambda r: r.info.start_time
    )
    parents = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    assert len(parents) == 1, [r.data.tags for r in parents]
    jobs: dict[str, list[Any]] = {}
    for run in runs:
        if run.data.tags.get("hydraflow.role") == "job":
            jobs.setdefault(run.data.tags["hydraflow.job_num"], []).append(run)
    return parents[0], jobs


def _status(runs: list[Any]) -> list[str]:
    return [run.info.status for run in runs]


def _progress(run_id: str) -> list[float]:
    from mlflow.tracking import MlflowClient

    history = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, "progress")
    return [m.value for m in history]


def _progress_logged(run_id: str) -> bool:
    return len(_progress(run_id)) > 2


def test_kill_9_repair_cancel_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hold").touch()
    sweep = subprocess.Popen(
        [sys.executable, str(APP), *SWEEP],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    try:
        _wait_for(lambda: len(list(tmp_path.glob("started-*"))) == 2, 120, "jobs 2 and 3 holding")

        def quick_jobs_done() -> bool:
            _parent, jobs = _runs()
            return all(_status(jobs.get(n, [])) == ["FINISHED"] for n in ("0", "1"))

        _wait_for(quick_jobs_done, 60, "jobs 0 and 1 FINISHED")

        # A live sweep in another process is left alone: every run stays RUNNING.
        code, out = _cli(capsys, "hydraflow", "repair")
        assert code == 0
        assert "left RUNNING: launcher alive" in out
        parent, jobs = _runs()
        assert parent.info.status == "RUNNING"
        assert _status(jobs["2"]) == _status(jobs["3"]) == ["RUNNING"]
        sweep_id = parent.data.tags["hydraflow.sweep_id"]

        # The launcher dies without a word; its tasks go on (they hold and log).
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()

    # A job's process is killed from outside: nobody is left to end its run. Both holding jobs
    # have logged progress first, so there is something to keep.
    _parent, holding = _runs()
    for held in ("2", "3"):
        held_run = holding[held][0].info.run_id
        _wait_for(partial(_progress_logged, held_run), 30, f"job {held}'s progress")
    os.kill(int((tmp_path / "started-4").read_text()), signal.SIGKILL)
    _wait_for(
        lambda: any(t.status.value == "failed" for t in started_tasks()), 30, "job 3's task failed"
    )
    code, out = _cli(capsys, "hydraflow", "repair")
    assert code == 0
    assert f"sweep {sweep_id} (crash_app): ended 1 run(s) KILLED" in out
    parent, jobs = _runs()
    (killed,) = jobs["3"]
    assert killed.info.status == "KILLED"
    assert killed.info.end_time is not None
    assert "ended failed" in killed.data.tags["hydraflow.end_reason"]
    assert "before the job recorded an outcome" in killed.data.tags["hydraflow.end_reason"]
    assert len(_progress(killed.info.run_id)) > 2  # what it logged before it died stays
    # Job 2's task still runs: its run and the parent stay RUNNING; `sweeps` says what to do.
    assert _status(jobs["2"]) == ["RUNNING"] and parent.info.status == "RUNNING"
    listed = json.loads(_cli(capsys, "hydraflow", "sweeps", "--json")[1])
    assert [(s["sweep_id"], s["state"]) for s in listed] == [(sweep_id, "orphaned")]
    assert f"flow cancel --sweep {sweep_id}" in listed[0]["note"]

    # `flow cancel --sweep` stops the task and, hydraflow being installed, ends the runs.
    code, out = _cli(capsys, "flow", "cancel", "--sweep", sweep_id)
    assert code == 0
    assert f"hydraflow: sweep {sweep_id}: 2 MLflow run(s) ended KILLED" in out
    parent, jobs = _runs()
    (cancelled,) = jobs["2"]
    assert cancelled.info.status == parent.info.status == "KILLED"
    assert "ended cancelled" in cancelled.data.tags["hydraflow.end_reason"]
    assert "is gone and no task of sweep" in parent.data.tags["hydraflow.end_reason"]
    assert len(_progress(cancelled.info.run_id)) > 2
    assert parent.data.metrics == {
        "jobs": 4.0,
        "completed": 2.0,
        "failed": 0.0,
        "killed": 2.0,
        "cost": 0.0,
    }
    _wait_for(lambda: not processes_mentioning(str(tmp_path)), 15, "no process left")
    listed = json.loads(_cli(capsys, "hydraflow", "sweeps", "--json")[1])
    assert [(s["sweep_id"], s["state"]) for s in listed] == [(sweep_id, "killed")]

    # Resume after the crash: exactly the unfinished jobs run, under the same parent run.
    (tmp_path / "hold").unlink()
    tasks_before = len(started_tasks())
    resumed = subprocess.run(
        [sys.executable, str(APP), *SWEEP],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )
    assert resumed.returncode == 0, resumed.stderr
    output = resumed.stdout + resumed.stderr
    for num in (0, 1):
        assert output.count(f"job #{num} (value={num + 1}) skipped") == 1, output
    assert "job #2 (value=3) skipped" not in output and "job #3" not in output.split("skipped")[-1]
    assert len(started_tasks()) == tasks_before + 2
    resumed_parent, jobs = _runs()
    assert resumed_parent.info.run_id == parent.info.run_id
    assert resumed_parent.data.tags["hydraflow.sweep_id"] == sweep_id
    assert resumed_parent.info.status == "FINISHED"
    assert "hydraflow.end_reason" not in resumed_parent.data.tags
    assert {num: _status(runs) for num, runs in jobs.items()} == {
        "0": ["FINISHED"],
        "1": ["FINISHED"],
        "2": ["KILLED", "FINISHED"],
        "3": ["KILLED", "FINISHED"],
    }
    assert resumed_parent.data.metrics["completed"] == 4.0
    assert resumed_parent.data.metrics["killed"] == 0.0
