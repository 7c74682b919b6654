"""Run.create and the tracking helpers write real runs that RunCollection reads back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from hydraflow import Run, RunCollection
from hydraflow.core.errors import ConfigError, NoActiveRunError
from hydraflow.tracking import (
    log_artifact,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
)


@dataclass
class Model:
    type: str = "cnn"
    sizes: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class Config:
    model: Model = field(default_factory=Model)
    seed: int = 7


CFG = {"model": {"type": "lstm", "layers": [64, 64]}, "lr": 0.001, "name": "${model.type}-run"}


def test_create_logs_flattened_config_and_finishes(fresh_uri: str) -> None:
    with Run.create(cfg=OmegaConf.create(CFG), experiment="train", run_name="first") as run:
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == run.info.run_id
        assert run.info.status == "RUNNING"
        log_metric("loss", 0.5)
        log_metric("loss", 0.25)
        log_metric("loss", 0.125, step=10)
        log_metric("loss", 0.1)
        log_metrics({"acc": 0.9, "loss2": 1.0})
        log_metrics({"acc": 0.95})
    assert mlflow.active_run() is None
    assert run.info.status == "FINISHED" and run.info.end_time is not None
    loaded = RunCollection.load("train").one()
    assert loaded.info.run_name == "first" and loaded.info.status == "FINISHED"
    assert loaded.params == {
        "model.type": "lstm",
        "model.layers": [64, 64],
        "lr": 0.001,
        "name": "lstm-run",
    }
    assert loaded.metric_history("loss")["step"].to_list() == [0, 1, 10, 11]
    assert loaded.metric_history("acc")["step"].to_list() == [0, 1]
    assert loaded.cfg is not None and loaded.cfg.name == "lstm-run"  # config.yaml, resolved
    assert loaded.tags["hydraflow.config_hash"]


def test_create_fails_the_run_when_the_block_raises(fresh_uri: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), Run.create(cfg=CFG, experiment="train"):
        raise RuntimeError("boom")
    assert RunCollection.load("train").one().info.status == "FAILED"


def test_create_accepts_dataclasses_and_plain_dicts(fresh_uri: str) -> None:
    with Run.create(cfg=Config(), experiment="dc"):
        pass
    assert RunCollection.load("dc").one().params == {
        "model.type": "cnn",
        "model.sizes": [1, 2],
        "seed": 7,
    }
    with pytest.raises(
        ConfigError, match="cfg must be a DictConfig, dict, dataclass or pydantic model"
    ):
        Run.create(cfg=42)
    with pytest.raises(ConfigError, match=r"'blob' has a value of 7000 characters"):
        Run.create(cfg={"blob": "x" * 7000})
    assert mlflow.active_run() is None  # nothing started for a refused config


def test_tracking_helpers_log_params_tags_and_artifacts(fresh_uri: str, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    with Run.create(cfg={}, experiment="train"):
        log_param("extra", 3)
        log_params({"opt": {"name": "adam"}, "bad key!": 1})
        set_tag("stage", "eval")
        log_artifact(model, "Model checkpoint")
        with pytest.raises(FileNotFoundError, match="does not exist"):
            log_artifact(tmp_path / "missing.pt")
    run = RunCollection.load("train").one()
    assert run.params["extra"] == 3 and run.params["opt.name"] == "adam"
    assert run.params["bad key!"] == 1  # sanitised in MLflow, original name restored on read
    assert run.tags["stage"] == "eval"
    assert run.tags["hydraflow.artifact.model.pt"] == "Model checkpoint"
    assert (run.artifacts_dir / "model.pt").read_bytes() == b"weights"


def test_tracking_outside_any_run_is_an_error(
    fresh_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    for call in (
        lambda: log_metric("loss", 1.0),
        lambda: log_metrics({"loss": 1.0}),
        lambda: log_param("a", 1),
        lambda: log_params({"a": 1}),
        lambda: set_tag("a", "b"),
        lambda: log_artifact("x"),
    ):
        with pytest.raises(NoActiveRunError, match="no active MLflow run"):
            call()
    assert (
        MlflowClient(fresh_uri).search_runs(["0"]) == []
    )  # no silent run in the default experiment
    assert [e.name for e in MlflowClient(fresh_uri).search_experiments()] == ["Default"]


def test_tracking_uses_mlflow_run_id_of_a_started_process(
    fresh_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(fresh_uri)
    run_id = client.create_run(client.create_experiment("ext")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    log_metric("score", 2.0)
    log_metric("score", 3.0)
    assert [m.step for m in client.get_metric_history(run_id, "score")] == [0, 1]
