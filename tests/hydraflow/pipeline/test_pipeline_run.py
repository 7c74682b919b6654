"""Running pipelines against a real sqlite MLflow store: data flow, records, selective re-runs."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from pipeline_helpers import (
    SEED_CFG,
    count_calls,
    seed_pipeline,
    stage_runs,
    store,
)

from hydraflow.pipeline import Pipeline, PipelineError, PipelineRunError, Stage, StageContext

__all__ = ["store"]

STAGES_TAG = "hydraflow.pipeline.stages"
SEED_STAGES = ["data_preparation", "model_training", "model_evaluation"]


@pytest.fixture(autouse=True)
def _calls_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_TEST_CALLS", str(tmp_path))


def _cfg(**changes: Any) -> Any:
    cfg = copy.deepcopy(SEED_CFG)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    return OmegaConf.create(cfg)


def test_seed_example_flows_values_and_files_downstream(store: str, tmp_path: Path) -> None:
    results = seed_pipeline().run(_cfg())

    assert list(results) == SEED_STAGES
    assert results["data_preparation"] == {"rows": 5}
    # mean of 0,2,4,6,8 = 4, times 2 epochs; the training stage read the data file handed down
    assert results["model_training"] == {"weight": 8.0, "rows_seen": 5}
    assert results["model_evaluation"] == {"score": 0.8, "weight": 8.0}
    model_file = results.outputs["model_training"].files["model.txt"]
    assert model_file.read_text() == "8.0"
    assert results.executed == SEED_STAGES and results.skipped == []


def test_records_one_parent_and_one_child_per_stage(store: str) -> None:
    results = seed_pipeline().run(_cfg())

    client = MlflowClient(store)
    parent = client.get_run(results.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hydraflow.role"] == "pipeline"
    children = stage_runs(store)
    assert [r.data.tags["hydraflow.stage"] for r in children] == SEED_STAGES
    keys = seed_pipeline().cache_keys(_cfg())
    for run in children:
        name = run.data.tags["hydraflow.stage"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == results.run_id
        assert run.data.tags["hydraflow.role"] == "stage"
        assert run.data.tags["hydraflow.cache_key"] == keys[name]
        assert run.info.run_name == name
    train = children[1]
    assert train.data.params == {"epochs": "2", "lr": "0.1"}
    assert train.data.metrics["weight"] == 8.0  # a flat dict of numbers becomes metrics
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id, "outputs")}
    assert artifacts == {"outputs/model.txt"}
    assert "result.pkl" in {a.path for a in client.list_artifacts(train.info.run_id)}


def test_second_run_skips_every_stage_and_reuses_values_and_files(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = seed_pipeline().run(_cfg())
    capsys.readouterr()

    second = seed_pipeline().run(_cfg())

    assert second.skipped == SEED_STAGES and second.executed == []
    assert dict(second) == dict(first)
    assert second.outputs["model_training"].files["model.txt"].read_text() == "8.0"
    assert second.outputs["model_training"].run_id == first.outputs["model_training"].run_id
    assert all(count_calls(tmp_path, name) == 1 for name in SEED_STAGES)
    assert len(stage_runs(store)) == 3  # no new child runs
    printed = capsys.readouterr().out
    assert printed.count("skipped, reusing run") == 3
    summary = json.loads(MlflowClient(store).get_run(second.run_id).data.tags[STAGES_TAG])
    assert {name: entry["status"] for name, entry in summary.items()} == dict.fromkeys(
        SEED_STAGES, "cached"
    )


def test_deleted_experiment_is_a_clear_error(store: str) -> None:
    client = MlflowClient(store)
    client.delete_experiment(client.create_experiment("gone"))

    with pytest.raises(ValueError, match="MLflow experiment 'gone' is deleted; restore it"):
        seed_pipeline().run(_cfg(), experiment="gone")


def test_changed_training_config_reruns_training_and_evaluation_only(
    store: str, tmp_path: Path
) -> None:
    seed_pipeline().run(_cfg())

    results = seed_pipeline().run(_cfg(model_training__epochs=3))

    assert results.skipped == ["data_preparation"]
    assert results.executed == ["model_training", "model_evaluation"]
    assert results["model_training"]["weight"] == 12.0
    assert count_calls(tmp_path, "data_preparation") == 1
    assert count_calls(tmp_path, "model_training") == 2
    assert [r.data.params["epochs"] for r in stage_runs(store, stage="model_training")] == [
        "2",
        "3",
    ]


def test_changed_code_reruns_that_stage_and_its_dependents(store: str) -> None:
    seed_pipeline().run(_cfg())

    def prepare_data(cfg: Any, ctx: StageContext) -> dict[str, Any]:  # same name, new code
        (ctx.output_dir / "data.csv").write_text("\n".join(["1"] * cfg.rows))
        return {"rows": cfg.rows}

    pipeline = seed_pipeline()
    pipeline.graph.stages["data_preparation"].fn = prepare_data
    results = pipeline.run(_cfg())

    assert results.executed == SEED_STAGES
    assert results["model_training"]["weight"] == 2.0


def test_force_reruns_the_stage_and_everything_downstream(store: str, tmp_path: Path) -> None:
    seed_pipeline().run(_cfg())

    results = seed_pipeline().run(_cfg(), force=["model_training"])

    assert results.skipped == ["data_preparation"]
    assert results.executed == ["model_training", "model_evaluation"]
    assert count_calls(tmp_path, "model_training") == 2


def test_until_runs_the_stage_and_its_upstream_only(store: str, tmp_path: Path) -> None:
    results = seed_pipeline().run(_cfg(), until="model_training")

    assert list(results) == ["data_preparation", "model_training"]
    assert count_calls(tmp_path, "model_evaluation") == 0
    assert stage_runs(store, stage="model_evaluation") == []


def test_only_runs_the_named_stages_with_upstream_from_the_cache(
    store: str, tmp_path: Path
) -> None:
    seed_pipeline().run(_cfg())

    results = seed_pipeline().run(_cfg(model_training__epochs=4), only=["model_training"])

    assert results.executed == ["model_training"]
    assert results.skipped == ["data_preparation"]
    assert "model_evaluation" not in results
    assert count_calls(tmp_path, "model_evaluation") == 1


def test_only_without_cached_upstream_is_a_clear_error(store: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data_preparation.*model_training") as info:
        seed_pipeline().run(_cfg(), only="model_training")

    assert "include them in the selection" in str(info.value)
    assert count_calls(tmp_path, "model_training") == 0


def test_from_reruns_the_stage_and_downstream_even_when_cached(store: str, tmp_path: Path) -> None:
    seed_pipeline().run(_cfg())

    results = seed_pipeline().run(_cfg(), from_="model_training")

    assert results.executed == ["model_training", "model_evaluation"]
    assert results.skipped == ["data_preparation"]
    assert count_calls(tmp_path, "data_preparation") == 1


def test_independent_stages_run_in_parallel_with_max_workers(store: str) -> None:
    barrier = threading.Barrier(2, timeout=60)  # passes only if both branches run at once

    def left() -> str:
        barrier.wait()
        return "left"

    def right() -> str:
        barrier.wait()
        return "right"

    def join(left: str, right: str) -> str:
        return left + "+" + right

    a, b = Stage("left", left), Stage("right", right)
    results = Pipeline([a, b, Stage("join", join).depends_on(a, b)]).run(max_workers=2)

    assert results["join"] == "left+right"


def test_failure_stops_dependents_finishes_independent_branch_and_resumes(
    store: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fail-now"
    marker.write_text("x")
    calls: list[str] = []

    def flaky(cfg: Any) -> int:
        calls.append("flaky")
        if marker.exists():
            raise RuntimeError("disk full")
        return 1

    def after_flaky(flaky: int) -> int:
        calls.append("after_flaky")
        return flaky + 1

    def independent() -> str:
        calls.append("independent")
        return "ok"

    def build() -> Pipeline:
        first = Stage("flaky", flaky)
        return Pipeline(
            [first, Stage("after_flaky", after_flaky).depends_on(first), Stage("solo", independent)]
        )

    with pytest.raises(PipelineRunError) as info:
        build().run()

    error = info.value
    assert "stage 'flaky' failed: RuntimeError: disk full" in str(error)
    assert "Not run (they depend on a failed stage): after_flaky" in str(error)
    assert error.not_run == ["after_flaky"] and set(error.failed) == {"flaky"}
    assert error.results == {"solo": "ok"}
    (failed_run,) = stage_runs(store, stage="flaky")
    assert failed_run.info.status == "FAILED"
    assert failed_run.data.tags["hydraflow.error"] == "RuntimeError: disk full"
    assert stage_runs(store, stage="after_flaky") == []
    parent = MlflowClient(store).get_run(failed_run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FAILED"

    marker.unlink()
    calls.clear()
    results = build().run()

    assert calls == ["flaky", "after_flaky"]  # the finished branch is a cache hit
    assert results.skipped == ["solo"] and results["after_flaky"] == 2


def test_stage_logs_into_its_own_run_via_mlflow_and_ctx(store: str) -> None:
    def measured(ctx: StageContext) -> None:
        mlflow.log_metric("fluent", 1.5)
        ctx.log_metric("via_ctx", 2.5)

    results = Pipeline([Stage("measured", measured)]).run()

    run = MlflowClient(store).get_run(results.outputs["measured"].run_id)
    assert run.data.metrics == {"fluent": 1.5, "via_ctx": 2.5}


def test_config_key_selects_another_section_and_kwargs_collects_upstream(store: str) -> None:
    def source(cfg: Any) -> int:
        return int(cfg.value)

    def sink(settings: Any, **upstream: int) -> dict[str, Any]:
        return {"factor": settings.factor, "upstream": upstream}

    src = Stage("source", source)
    dst = Stage("sink", sink, config_key="shared.sink").depends_on(src)
    cfg = {"source": {"value": 3}, "shared": {"sink": {"factor": 7}}}

    results = Pipeline([src, dst]).run(cfg)

    assert results["sink"] == {"factor": 7, "upstream": {"source": 3}}
    (run,) = stage_runs(store, stage="sink")
    assert run.data.params == {"factor": "7"}


def test_unpicklable_in_process_result_flows_downstream_but_is_not_cached(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def make_lock() -> Any:
        return threading.Lock()

    def use_lock(make_lock: Any) -> bool:
        return hasattr(make_lock, "acquire")

    def build() -> Pipeline:
        first = Stage("make_lock", make_lock)
        return Pipeline([first, Stage("use_lock", use_lock).depends_on(first)])

    assert build().run()["use_lock"] is True
    assert "cannot be pickled" in capsys.readouterr().out

    second = build().run()

    assert second.executed == ["make_lock"]  # recomputed: nothing stored to reuse
    assert second.skipped == ["use_lock"]


def test_unusable_store_is_one_error_naming_the_uri(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")

    with pytest.raises(PipelineError, match="Cannot use the MLflow store 'bogus://nowhere'"):
        seed_pipeline().run(_cfg())
