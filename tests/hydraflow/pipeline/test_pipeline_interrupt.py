"""Ctrl-C during a pipeline: finished records are kept, runs are closed, no task is left running."""

from __future__ import annotations

import time
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from pipeline_helpers import stage_runs, store

from hydraflow.pipeline import Pipeline, Stage

__all__ = ["store"]


def sleep_long() -> None:
    time.sleep(300)


def test_interrupt_keeps_finished_records_and_cancels_running_task(store: str) -> None:
    client = MlflowClient(store)

    def done_first() -> int:
        return 1

    def interrupt_once_task_runs(done_first: int) -> None:
        deadline = time.monotonic() + 120  # a guard, not an assertion on time
        while time.monotonic() < deadline:
            runs = stage_runs(store, stage="long_task")
            if runs and "flow.task_id" in runs[0].data.tags:
                raise KeyboardInterrupt
            time.sleep(0.2)
        raise AssertionError("the task stage never started")

    first = Stage("done_first", done_first)
    pipeline = Pipeline(
        [
            first,
            Stage("interrupter", interrupt_once_task_runs).depends_on(first),
            Stage("long_task", sleep_long, resources={"instance_type": "cpu"}),
        ]
    )

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(max_workers=2)

    (finished,) = stage_runs(store, stage="done_first")
    assert finished.info.status == "FINISHED"
    (interrupted,) = stage_runs(store, stage="interrupter")
    assert interrupted.info.status == "KILLED"
    (task_run,) = stage_runs(store, stage="long_task")
    assert task_run.info.status == "FAILED"
    assert "cancelled because the pipeline was interrupted" in task_run.data.tags["hydraflow.error"]
    parent = client.get_run(finished.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"
    from flow_backend import Flow, TaskStatus

    with Flow() as flow:
        task = flow.get_task(task_run.data.tags["flow.task_id"])
        assert task.status is TaskStatus.CANCELLED


def test_parent_run_nests_under_the_active_run_and_uses_its_experiment(store: str) -> None:
    def one() -> int:
        return 1

    experiment_id = MlflowClient(store).create_experiment("outer")
    with mlflow.start_run(experiment_id=experiment_id) as outer:
        results = Pipeline([Stage("one", one)]).run()

    parent = MlflowClient(store).get_run(results.run_id)
    assert parent.data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert parent.info.experiment_id == experiment_id
    assert len(stage_runs(store, experiment="outer")) == 1
    assert MlflowClient(store).get_experiment_by_name("pipeline") is None  # no stray experiment


def test_experiment_argument_and_environment_choose_the_experiment(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def one(cfg: Any) -> int:
        return 1

    Pipeline([Stage("one", one)]).run(experiment="explicit")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    Pipeline([Stage("one", one)]).run()

    assert len(stage_runs(store, experiment="explicit")) == 1
    assert len(stage_runs(store, experiment="from-env")) == 1  # caches are per experiment
