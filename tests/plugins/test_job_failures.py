"""Jobs that raise, die, or return what cannot be pickled: each FAILED clearly, the others fine."""

from __future__ import annotations

import pickle
from pathlib import Path

from launcher_helpers import APPS, RunApp, job_runs, processes_mentioning, started_tasks

APP = APPS / "behaviour_app.py"


def _results(tmp_path: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in tmp_path.glob("multirun/*/*/.flow/*/result.pkl")}


def test_raise_kill_unpicklable_each_fail_clearly_others_complete(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra/callbacks=mlflow",
        "mode=ok,raise,kill,unpicklable",
        "value=3",
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    # The launcher names every failed job and why; Hydra then raises the first failure.
    assert "job #1 (mode=raise value=3) FAILED: ValueError: boom from value 3" in err
    assert "job #2 (mode=kill value=3) FAILED: TaskEndedWithoutResult" in err
    assert "job #3 (mode=unpicklable value=3) FAILED: TypeError" in err
    assert "cannot be pickled" in err

    results = _results(tmp_path)
    assert sorted(results) == ["0", "1", "3"]  # the killed job left no result
    ok = pickle.loads(results["0"].read_bytes())
    assert ok.return_value == {"value": 3.0, "double": 6.0}
    # The killed job's task log was kept beside its Hydra output, with what it printed.
    killed_log = next(tmp_path.glob("multirun/*/*/2/flow-task.log")).read_text()
    assert "about to die by SIGKILL" in killed_log

    all_runs = job_runs(_uri(tmp_path), "behaviour_app")
    runs = {
        r.data.tags["hydraflow.job_num"]: r for r in all_runs if "hydraflow.job_num" in r.data.tags
    }
    assert runs["0"].info.status == "FINISHED"
    assert runs["0"].data.metrics["double"] == 6.0
    assert runs["1"].info.status == "FAILED"
    assert runs["1"].data.tags["hydraflow.error"] == "ValueError: boom from value 3"
    assert runs["2"].info.status == "FAILED"  # ended by the launcher: the process never could
    assert "produced no result" in runs["2"].data.tags["hydraflow.error"]
    assert runs["3"].info.status == "FAILED"
    assert "cannot be pickled" in runs["3"].data.tags["hydraflow.error"]
    # The sweep stopped on the failures (Hydra's sweeper raises): its parent run still got the
    # summary and ended FAILED.
    (parent,) = [r for r in all_runs if r.data.tags.get("hydraflow.role") == "sweep"]
    assert parent.info.status == "FAILED"
    assert parent.data.metrics == {
        "jobs": 4.0,
        "completed": 1.0,
        "failed": 3.0,
        "killed": 0.0,
        "cost": 0.0,
    }
    assert not processes_mentioning(str(tmp_path))


def test_killed_job_message_carries_log_tail(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(APP, "-m", "hydra/launcher=flow", "mode=kill", "value=7")
    assert proc.returncode == 1
    assert "produced no result" in proc.stderr
    assert "Last 30 log lines of the task" in proc.stderr
    assert "about to die by SIGKILL" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_max_retries_reruns_a_job_whose_task_died(tmp_path: Path, run_app: RunApp) -> None:
    marker = tmp_path / "died-once"
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_retries=1",
        "mode=kill_once",
        f"marker={marker}",
        "value=1,2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "retry 1/1" in proc.stdout + proc.stderr
    results = _results(tmp_path)
    assert sorted(results) == ["0", "1"]
    assert {pickle.loads(p.read_bytes()).return_value["value"] for p in results.values()} == {
        1.0,
        2.0,
    }


def test_code_exceptions_are_not_retried_and_keep_their_traceback(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(
        APP, "-m", "hydra/launcher=flow", "hydra.launcher.max_retries=2", "mode=raise,raise_odd"
    )
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "retry" not in output
    assert "job #0 (mode=raise) FAILED: ValueError: boom from value 1" in proc.stderr
    # An exception that cannot be pickled still comes back, as its type and message.
    assert "job #1 (mode=raise_odd) FAILED: RuntimeError: OddError: odd failure 1" in proc.stderr
    # Hydra raises the first failure, with the traceback from inside the task attached.
    assert "Traceback in the task:" in proc.stderr
    assert 'raise ValueError(f"boom from value {cfg.value}")' in proc.stderr
    assert len(started_tasks()) == 2


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
