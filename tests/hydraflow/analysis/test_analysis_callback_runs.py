"""Runs recorded by the hydraflow MLflow callback (a real Hydra multirun) read back with configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hydraflow import RunCollection

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train.py"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="examples/train.py is not in this checkout")
def test_sweep_runs_come_back_with_their_hydra_configs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "-m", "lr=1e-3,1e-2", "model.type=mlp,cnn", "epochs=3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = RunCollection.load("train", tracking_uri=uri)
    assert len(runs) == 4
    assert sorted(zip(runs["model.type"].to_list(), runs["lr"].to_list(), strict=True)) == [
        ("cnn", 0.001),
        ("cnn", 0.01),
        ("mlp", 0.001),
        ("mlp", 0.01),
    ]
    assert runs["model.hidden"].to_list() == ["[64, 64]"] * 4
    sweep_ids = set(runs["tags.hydraflow.sweep_id"].to_list())
    assert len(sweep_ids) == 1
    assert len(RunCollection.load("train", tracking_uri=uri, sweep_id=sweep_ids.pop())) == 4
    for run in runs:
        assert run.cfg is not None
        assert run.cfg.lr == run.params["lr"] and run.cfg.model.type == run.params["model.type"]
        assert run.params["model.hidden"] == [64, 64]
        assert run.metric_history("loss")["step"].to_list() == [0, 1, 2]
    best = runs.best("metrics.loss")
    assert best.params["lr"] == 0.01
    table = runs.group_by("model.type").mean("metrics.accuracy")
    assert table["model.type"].to_list() == ["cnn", "mlp"]
