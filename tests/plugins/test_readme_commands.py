"""The README's launcher commands, end to end: the demo app, a real sqlite store, local tasks."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from launcher_helpers import TRAIN, RunApp, job_runs, started_tasks

METRICS = {"loss", "val_loss", "accuracy", "final_loss", "final_accuracy"}


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _split(runs: list[Any]) -> tuple[list[Any], list[Any]]:
    parents = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    return parents, jobs


@pytest.mark.fresh_store
def test_demo_sweep_records_one_parent_and_one_child_per_job(
    tmp_path: Path, run_app: RunApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default store: mlflow.db in the launch dir
    proc = run_app(TRAIN, "-m", "hydra/launcher=flow", "lr=1e-3,1e-4")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the store, not under multirun/

    from mlflow.tracking import MlflowClient

    client = MlflowClient(_store(tmp_path))
    parents, jobs = _split(job_runs(_store(tmp_path), "train"))
    assert len(parents) == 1 and len(jobs) == 2
    parent = parents[0]
    sweep_id = parent.data.tags["hydraflow.sweep_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics == {
        "jobs": 2.0,
        "completed": 2.0,
        "failed": 0.0,
        "killed": 0.0,
        "cost": 0.0,
    }

    # Task names carry the same sweep id (`flow cancel --sweep ID` finds them): the 2 jobs ran at
    # once on 2 warm workers.
    assert sorted(t.name for t in started_tasks()) == [f"hf-{sweep_id}-w0", f"hf-{sweep_id}-w1"]
    assert len({r.data.tags["flow.task_id"] for r in jobs}) == 2
    by_lr = {r.data.params["lr"]: r for r in jobs}
    assert set(by_lr) == {"0.001", "0.0001"}
    for num, lr in enumerate(("0.001", "0.0001")):
        run = by_lr[lr]
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert run.data.params == {
            "lr": lr,
            "epochs": "5",
            "batch_size": "32",
            "model.type": "mlp",
            "model.hidden": "[64, 64]",
            "seed": "0",
        }
        assert set(run.data.metrics) == METRICS
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["hydraflow.sweep_id"] == sweep_id
        assert tags["hydraflow.job_num"] == str(num)
        assert json.loads(tags["hydraflow.overrides"]) == [f"lr={lr}"]
        assert len(tags["hydraflow.config_hash"]) == 32
        assert tags["flow.provider"] == "local"
        assert tags["flow.instance_type"] == "cpu"
        assert tags["flow.task_id"].startswith("local-")
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in history] == [0, 1, 2, 3, 4]  # logged by the task function
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {".hydra", "train.log"} <= artifacts
        hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
        assert hydra_files == {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"}
    assert by_lr["0.001"].data.metrics["final_loss"] < by_lr["0.0001"].data.metrics["final_loss"]

    # The sweep dir looks as after a basic-launcher run, plus the task's captured output.
    for num in (0, 1):
        (job_dir,) = tmp_path.glob(f"multirun/*/*/{num}")
        assert {".hydra", "train.log", "flow-task.log"} <= {p.name for p in job_dir.iterdir()}
        assert "loss=" in (job_dir / "flow-task.log").read_text()


def test_launcher_instance_type_is_recorded(tmp_path: Path, run_app: RunApp) -> None:
    """One task per job (``reuse_workers=false``: the job runner is handed its task on its command
    line; on workers, in the order): the job's run names its task, instance type and price."""
    proc = run_app(
        TRAIN,
        "-m",
        "hydra/launcher=flow",
        "hydra/launcher/instance=4xa100",
        "hydra.launcher.reuse_workers=false",
        "lr=1e-3,1e-4",
    )
    assert proc.returncode == 0, proc.stderr
    _parents, jobs = _split(job_runs(_store(tmp_path), "train"))
    assert [r.data.tags["flow.instance_type"] for r in jobs] == ["4xa100", "4xa100"]
    assert "4xa100" in proc.stderr  # the progress lines name the instance type
    tasks = {task.task_id: task for task in started_tasks()}
    for run in jobs:
        tags = run.data.tags
        assert tags["flow.provider"] == "local"
        task = tasks[tags["flow.task_id"]]  # the job's own task: hf-<sweep>-<job>
        assert task.name == f"hf-{tags['hydraflow.sweep_id']}-{tags['hydraflow.job_num']}"
        # this machine costs nothing (mithril's prices: test_remote_mithril)
        assert (tags["flow.cost_per_hour"], tags["flow.total_cost"]) == ("0", "0.0000")


def test_per_job_instance_types_sweep(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(
        TRAIN,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=2",
        "+flow/instance=a100,h100",
        "lr=1e-3,1e-4",
    )
    assert proc.returncode == 0, proc.stderr
    parents, jobs = _split(job_runs(_store(tmp_path), "train"))
    assert len(parents) == 1 and len(jobs) == 4
    pairs = Counter(
        (r.data.tags["flow.instance_type"], r.data.params["flow.instance"], r.data.params["lr"])
        for r in jobs
    )
    assert pairs == Counter(
        {
            ("a100", "a100", "0.001"): 1,
            ("a100", "a100", "0.0001"): 1,
            ("h100", "h100", "0.001"): 1,
            ("h100", "h100", "0.0001"): 1,
        }
    )
    # each job ran on a task (a warm worker) of its own instance type (the task names it in full,
    # e.g. h100-80gb.sxm.8x), and at most max_parallel=2 workers of each type were started
    types = {task.task_id: task.instance_type for task in started_tasks()}
    for run in jobs:
        alias = run.data.tags["flow.instance_type"]
        assert types[run.data.tags["flow.task_id"]].startswith(f"{alias}-"), (alias, types)
    assert sorted(Counter(types.values()).values()) in ([1, 2], [2, 2]), types


def test_dry_run_prints_the_plan_and_launches_nothing(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(
        TRAIN,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.dry_run=true",
        "hydra.launcher.max_parallel=2",
        "lr=1e-3,1e-4,1e-5",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Dry run on provider 'local': 3 job(s), nothing launched." in out
    for num, lr in enumerate(("0.001", "0.0001", "1e-05")):
        line = next(line for line in out.splitlines() if line.startswith(f"#{num} "))
        assert f"lr={lr}" in line and "cpu" in line and "$0.00" in line
    assert "Total worst-case cost: $0.00" in out
    assert "Warm workers: at most 2 per instance type, 2 task start(s) instead of 3" in out
    assert not started_tasks()
    assert not list(tmp_path.glob("multirun/*/*/*/.hydra"))
    if (tmp_path / "mlflow.db").exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(_store(tmp_path))
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert not client.search_runs(experiments)


def test_callback_works_the_same_with_the_basic_launcher(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(TRAIN, "-m", "lr=1e-3,1e-4")
    assert proc.returncode == 0, proc.stderr
    parents, jobs = _split(job_runs(_store(tmp_path), "train"))
    assert len(parents) == 1 and len(jobs) == 2
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in jobs)
    assert all(set(r.data.metrics) == METRICS and r.info.status == "FINISHED" for r in jobs)
    assert {r.data.params["lr"] for r in jobs} == {"0.001", "0.0001"}
    assert not started_tasks()


@pytest.mark.fresh_store
def test_sixteen_jobs_at_once_to_a_fresh_store_all_complete(
    tmp_path: Path, run_app: RunApp
) -> None:
    assert not (tmp_path / "mlflow.db").exists()
    proc = run_app(
        TRAIN,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=16",
        "seed=range(16)",
        "epochs=1",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    parents, jobs = _split(job_runs(_store(tmp_path), "train"))
    assert len(parents) == 1
    assert len(jobs) == 16
    assert sorted(int(r.data.params["seed"]) for r in jobs) == list(range(16))
    assert all(r.info.status == "FINISHED" for r in jobs)
    assert all(set(r.data.metrics) == METRICS for r in jobs)
    assert parents[0].data.metrics["completed"] == 16.0
    assert os.path.getsize(tmp_path / "mlflow.db") > 0
