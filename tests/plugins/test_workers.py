"""Warm workers (``hydra.launcher.reuse_workers=true``, the default) on the local provider.

A worker runs many jobs; a job that crashes, exits or hangs fails alone and its worker is replaced;
a job's changes to the process do not reach the next job; the streaming session works end to end.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from launcher_helpers import APPS, RunApp, processes_mentioning, started_tasks

APP = APPS / "behaviour_app.py"


def _results(tmp_path: Path) -> dict[int, object]:
    found = {}
    for path in tmp_path.glob("multirun/*/*/.flow/*/result.pkl"):
        found[int(path.parent.name)] = pickle.loads(path.read_bytes()).return_value
    return found


def _worker_names() -> list[str]:
    return sorted(task.name.rsplit("-", 1)[1] for task in started_tasks())


def test_workers_run_many_jobs_each_with_its_own_log(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(
        APP, "-m", "hydra/launcher=flow", "hydra.launcher.max_parallel=2", "value=1,2,3,4,5"
    )
    assert proc.returncode == 0, proc.stderr
    assert _results(tmp_path) == {n: {"value": n + 1.0, "double": 2.0 * (n + 1)} for n in range(5)}
    assert _worker_names() == ["w0", "w1"]  # 5 jobs, 2 worker tasks
    for num in range(5):  # each job's output holds only what that job printed
        (log,) = tmp_path.glob(f"multirun/*/*/{num}/flow-task.log")
        assert log.read_text().count("job starts:") == 1
        assert f"value={num + 1}" in log.read_text()
    assert not processes_mentioning(str(tmp_path))  # the workers are gone


def test_a_job_that_exits_or_is_killed_fails_alone_and_its_worker_is_replaced(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=1",
        "mode=ok,exit,kill,ok",
        "value=3",
    )
    assert proc.returncode == 1
    assert "job #1 (mode=exit value=3) FAILED: TaskEndedWithoutResult" in proc.stderr
    assert "job #2 (mode=kill value=3) FAILED: TaskEndedWithoutResult" in proc.stderr
    assert "exit code 3" in proc.stderr
    assert "about to exit with status 3" in proc.stderr  # its log tail
    assert (
        "about to die by SIGKILL" in next(tmp_path.glob("multirun/*/*/2/flow-task.log")).read_text()
    )
    assert sorted(_results(tmp_path)) == [0, 3]
    assert _worker_names() == ["w0", "w1", "w2"]  # one worker per crash, plus the first
    assert not processes_mentioning(str(tmp_path))


def test_a_hanging_job_is_stopped_at_its_time_limit_and_the_rest_run(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=1",
        "hydra.launcher.max_run_time_hours=0.0005",  # 1.8 s
        "mode=sleep,ok",
        "seconds=600",
    )
    assert proc.returncode == 1
    assert "job #0 (mode=sleep seconds=600) FAILED: TaskEndedWithoutResult" in proc.stderr
    assert "exceeded max_run_time_hours=0.0005" in proc.stderr
    assert sorted(_results(tmp_path)) == [1]
    assert not processes_mentioning(str(tmp_path))


def test_a_job_changing_process_state_does_not_reach_the_next_job(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=1",
        "mode=global",
        "value=1,2",
    )
    assert proc.returncode == 0, proc.stderr
    first, second = _results(tmp_path)[0], _results(tmp_path)[1]
    assert _worker_names() == ["w0"]  # both jobs ran in the same process
    # the first job set an env var, left the cwd and edited sys.argv: the second saw none of it
    # nor did a job see what hydraflow's own modules hand each other (sweep id, its task)
    # it also added a handler to the root logger, which Hydra sets up anew for every job from
    # hydra.job_logging (the second job did not see it), and one to a logger of its own
    clean = {
        "env_seen": False,
        "argv_seen": False,
        "cwd_ok": True,
        "hydraflow_internal_env": [],
        "root_handler_seen": False,
    }
    assert first == {**clean, "earlier_jobs_here": 0, "named_handler_seen": False}
    # module state does stay (documented): globals of the user's script and of the libraries it
    # uses (a handler on a logger of its own): the second job sees the first's
    assert second == {**clean, "earlier_jobs_here": 1, "named_handler_seen": True}


def test_a_secret_in_launcher_env_reaches_every_job_and_no_file(
    tmp_path: Path, run_app: RunApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-value-for-the-worker-test"
    monkeypatch.setenv("W16_LAUNCH_SECRET", secret)  # as a user passes one: by interpolation
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=1",
        "+hydra.launcher.env.BEHAVIOUR_API_KEY=${oc.env:W16_LAUNCH_SECRET}",
        "mode=secret",
        "value=1,2",
    )
    assert proc.returncode == 0, proc.stderr
    assert _results(tmp_path) == {0: {"key": secret}, 1: {"key": secret}}
    assert _worker_names() == ["w0"]  # one worker ran both: the second job got it too
    written = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    # the results hold what the jobs returned; no order, spec, log or task record holds it
    assert sorted(p.name for p in written) == ["result.pkl", "result.pkl"], written


def test_workers_off_gives_one_task_per_job(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.reuse_workers=false",
        "hydra.launcher.max_parallel=2",
        "value=1,2,3",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(_results(tmp_path)) == [0, 1, 2]
    assert _worker_names() == ["0", "1", "2"]  # tasks hf-<sweep>-<job>
