"""Isolation for the launcher tests: FLOW_HOME, the MLflow store and the cwd live in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own Flow state, MLflow store and working directory."""
    monkeypatch.setenv("FLOW_HOME", str(tmp_path / "flow-home"))
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "flow-config.yaml"))
    monkeypatch.setenv("FLOW_PROVIDER", "local")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("HYDRAFLOW_SWEEP_ID", "HYDRAFLOW_PARENT_RUN_ID", "HYDRA_FULL_ERROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    os.chdir(REPO)
