"""Shared fixtures and stage functions for the pipeline tests (importable by task subprocesses)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from hydraflow.pipeline import Pipeline, Stage, StageContext


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_store: Path) -> Iterator[str]:
    """A fresh sqlite MLflow store, FLOW_HOME and cwd in tmp_path; yields the tracking URI."""
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FLOW_HOME", str(tmp_path / "flow-home"))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    yield uri


def stage_runs(uri: str, experiment: str = "pipeline", stage: str | None = None) -> list[Run]:
    """Every stage child run in the experiment (optionally of one stage), oldest first."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} was not created"
    query = "tags.`hydraflow.role` = 'stage'"
    if stage:
        query += f" and tags.`hydraflow.stage` = '{stage}'"
    runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time ASC"])
    return list(runs)


def count_calls(folder: Path, name: str) -> int:
    """How many times a stage function recorded a call in ``folder/calls/<name>``."""
    path = folder / "calls" / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def _record_call(name: str) -> None:
    calls = Path(os.environ.get("PIPELINE_TEST_CALLS", ".")) / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    with open(calls / name, "a") as handle:
        handle.write(f"{os.getpid()}\n")


# -- the seed's three stages ------------------------------------------------------------------
def prepare_data(cfg: Any, ctx: StageContext) -> dict[str, Any]:
    """Write a small dataset file; return its size."""
    _record_call("data_preparation")
    rows = [str(i * cfg.scale) for i in range(cfg.rows)]
    (ctx.output_dir / "data.csv").write_text("\n".join(rows))
    return {"rows": cfg.rows}


def train_model(cfg: Any, data_preparation: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """Read the upstream file through ctx.inputs; write a 'model'; return its stats."""
    _record_call("model_training")
    data_file = ctx.inputs["data_preparation"].files["data.csv"]
    values = [float(v) for v in data_file.read_text().splitlines()]
    weight = sum(values) / len(values) * cfg.epochs
    (ctx.output_dir / "model.txt").write_text(str(weight))
    return {"weight": weight, "rows_seen": data_preparation["rows"]}


def evaluate_model(model_training: dict[str, Any], ctx: StageContext) -> dict[str, float]:
    """Read the model file handed downstream; return metrics."""
    _record_call("model_evaluation")
    weight = float(ctx.inputs["model_training"].files["model.txt"].read_text())
    return {"score": weight / 10.0, "weight": model_training["weight"]}


def seed_pipeline() -> Pipeline:
    """The seed's example, verbatim in shape."""
    data_stage = Stage("data_preparation", prepare_data)
    train_stage = Stage("model_training", train_model)
    eval_stage = Stage("model_evaluation", evaluate_model)
    return Pipeline(
        [
            data_stage,
            train_stage.depends_on(data_stage),
            eval_stage.depends_on(train_stage),
        ]
    )


SEED_CFG: dict[str, Any] = {
    "data_preparation": {"rows": 5, "scale": 2},
    "model_training": {"epochs": 2, "lr": 0.1},
    "model_evaluation": {},
}


def gated(cfg: Any) -> str:
    """Wait until the file named by PIPELINE_GATE exists (if set), then return who computed it."""
    gate = os.environ.get("PIPELINE_GATE")
    deadline = time.monotonic() + 120  # a guard against hanging, not an assertion on time
    while gate and not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.05)
    return f"computed by {os.getpid()}"


def gated_pipeline() -> Pipeline:
    """One stage that waits for a gate file: lets a test hold it mid-computation."""
    return Pipeline([Stage("gated", gated)])
