"""Stages that run as Flow tasks on the local provider (real subprocesses, FLOW_HOME in tmp_path)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from pipeline_helpers import stage_runs, store
from sshd import SSHServer

from hydraflow.pipeline import Pipeline, PipelineRunError, Stage, StageContext

__all__ = ["store"]

TASK = {"instance_type": "cpu"}


def make_numbers(cfg: Any, ctx: StageContext) -> list[int]:
    numbers = list(range(cfg.count))
    (ctx.output_dir / "numbers.txt").write_text(",".join(map(str, numbers)))
    return numbers


def sum_in_task(cfg: Any, make_numbers: list[int], ctx: StageContext) -> dict[str, Any]:
    import mlflow

    from_file = ctx.inputs["make_numbers"].files["numbers.txt"].read_text()
    mlflow.log_metric("logged_in_task", 7.0)  # lands in the stage's run (MLFLOW_RUN_ID)
    (ctx.output_dir / "total.txt").write_text(str(sum(make_numbers) * cfg.factor))
    return {"total": sum(make_numbers) * cfg.factor, "pid": os.getpid(), "file": from_file}


def fail_in_task(make_numbers: list[int]) -> None:
    raise KeyError(f"no column {len(make_numbers)}")


def unpicklable_in_task(make_numbers: list[int]) -> Any:
    return threading.Lock()


def _pipeline(fn: Any) -> Pipeline:
    first = Stage("make_numbers", make_numbers)
    return Pipeline([first, Stage("in_task", fn, resources=TASK).depends_on(first)])


CFG = {"make_numbers": {"count": 4}, "in_task": {"factor": 10}}


def test_task_stage_runs_in_a_flow_task_with_the_same_data_flow_and_records(
    store: str, tmp_path: Path
) -> None:
    results = _pipeline(sum_in_task).run(CFG)

    value = results["in_task"]
    assert value["total"] == 60 and value["file"] == "0,1,2,3"
    assert value["pid"] != os.getpid()  # it ran in another process: the task
    assert results.outputs["in_task"].files["total.txt"].read_text() == "60"
    (run,) = stage_runs(store, stage="in_task")
    assert run.info.status == "FINISHED"
    assert run.data.params == {"factor": "10"}
    assert run.data.metrics["logged_in_task"] == 7.0
    assert run.data.tags["flow.provider"] == "local"
    task_id = run.data.tags["flow.task_id"]
    from flow_backend import Flow, TaskStatus

    with Flow() as flow:
        assert flow.get_task(task_id).status is TaskStatus.COMPLETED

    again = _pipeline(sum_in_task).run(CFG)
    assert again.skipped == ["make_numbers", "in_task"]
    assert again["in_task"] == value
    with Flow() as flow:
        assert len(flow.list_tasks()) == 1  # the cache hit started no task


def test_task_stage_error_is_raised_with_the_stage_name(store: str) -> None:
    with pytest.raises(PipelineRunError) as info:
        _pipeline(fail_in_task).run(CFG)

    assert "stage 'in_task' failed: KeyError: 'no column 4'" in str(info.value)
    assert isinstance(info.value.failed["in_task"], KeyError)
    (run,) = stage_runs(store, stage="in_task")
    assert run.info.status == "FAILED"
    assert "flow.task_id" in run.data.tags
    trace = MlflowClient(store).download_artifacts(run.info.run_id, "error.txt")
    assert "KeyError: 'no column 4'" in Path(trace).read_text()


def test_unpicklable_result_of_a_task_stage_names_the_stage(store: str) -> None:
    with pytest.raises(PipelineRunError) as info:
        _pipeline(unpicklable_in_task).run(CFG)

    message = str(info.value)
    assert "stage 'in_task' failed" in message
    assert (
        "Stage 'in_task' runs as a Flow task and returned a value that cannot be pickled" in message
    )
    assert info.value.results == {"make_numbers": [0, 1, 2, 3]}


def test_unpicklable_input_of_a_task_stage_names_the_stage(store: str) -> None:
    def make_lock() -> Any:
        return threading.Lock()

    def use_in_task(make_lock: Any) -> None:
        return None

    first = Stage("make_lock", make_lock)
    pipeline = Pipeline([first, Stage("in_task", use_in_task, resources=TASK).depends_on(first)])
    with pytest.raises(PipelineRunError) as info:
        pipeline.run()

    assert (
        "Stage 'in_task' runs as a Flow task but its function or inputs cannot be pickled"
        in str(info.value)
    )
    from flow_backend import Flow

    with Flow() as flow:
        assert flow.list_tasks() == []  # refused before any task started


def test_task_stage_on_mithril_without_an_api_key_fails_clearly(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_PROVIDER", "mithril")
    monkeypatch.delenv("MITHRIL_API_KEY", raising=False)

    with pytest.raises(PipelineRunError) as info:
        _pipeline(sum_in_task).run(CFG)

    message = str(info.value)
    assert "Stage 'in_task': could not run as a Flow task on provider 'mithril'" in message
    assert "Set MITHRIL_API_KEY" in message
    assert info.value.results == {"make_numbers": [0, 1, 2, 3]}
    assert not (Path.cwd() / ".hydraflow").exists()  # nothing staged is left behind


def sum_on_host(cfg: Any, make_numbers: list[int], ctx: StageContext) -> dict[str, Any]:
    from_file = ctx.inputs["make_numbers"].files["numbers.txt"].read_text()
    (ctx.output_dir / "total.txt").write_text(str(sum(make_numbers) * cfg.factor))
    return {"total": sum(make_numbers) * cfg.factor, "cwd": os.getcwd(), "file": from_file}


def test_task_stage_runs_on_ssh_and_its_value_and_files_come_home(
    store: str, sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage runs in the ssh host's working folder (the uploaded code), reads its upstream
    stage's file there, and its value, error-free record and output folder come home."""
    remote = tmp_path / "remote"
    monkeypatch.setenv("FLOW_SSH_HOSTS", sshd.destination)
    monkeypatch.setenv("FLOW_SSH_KEY_PATH", str(sshd.key_path))
    monkeypatch.setenv("FLOW_SSH_REMOTE_DIR", str(remote))
    first = Stage("make_numbers", make_numbers)
    on_ssh = {"provider": "ssh", "python": sys.executable, **TASK}
    pipeline = Pipeline([first, Stage("in_task", sum_on_host, resources=on_ssh).depends_on(first)])

    results = pipeline.run(CFG)

    value = results["in_task"]
    assert value["total"] == 60 and value["file"] == "0,1,2,3"
    assert Path(value["cwd"]).is_relative_to(remote)  # it ran in the host's working folder
    assert results.outputs["in_task"].files["total.txt"].read_text() == "60"  # came home
    (run,) = stage_runs(store, stage="in_task")
    assert run.info.status == "FINISHED"
    assert run.data.tags["flow.provider"] == "ssh"
    from flow_backend import Flow, TaskStatus

    with Flow(provider="ssh") as flow:  # released by the `collected` mark, not left waiting
        task = flow.get_task(run.data.tags["flow.task_id"])
        assert task.wait(timeout=30) is TaskStatus.COMPLETED
    assert not (tmp_path / ".hydraflow").exists()  # the staged call is removed here
