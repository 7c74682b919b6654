"""Isolation and helpers for the launcher tests.

Every test gets its own FLOW_HOME, MLflow store and working directory under ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from launcher_helpers import REPO, RunApp


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


@pytest.fixture
def run_app(tmp_path: Path) -> RunApp:
    """Run a Hydra app (a path) with arguments in ``tmp_path``; returns the finished process."""

    def run(app: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(app), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
        )

    return run
