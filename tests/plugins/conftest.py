"""Isolation and helpers for the launcher tests.

Every test gets its own FLOW_HOME, MLflow store and working directory under ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from launcher_helpers import REPO, RunApp


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fresh_store: start without an MLflow store file")


@pytest.fixture(autouse=True)
def isolated(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own Flow state, MLflow store and working directory.

    The store starts as a copy of an empty migrated one, except for tests marked ``fresh_store``.
    Hydra's own suites (``hydra`` in the test's id) sweep into ``tmp_path`` and look at what is
    there: their store is beside it. They need one all the same: a job on a worker forked from
    this process (which has imported mlflow) flushes MLflow's logging as it ends, and a missing
    store was made and migrated then (a second per sweep).
    """
    store = tmp_path / "mlflow.db"
    if "hydra" in request.node.nodeid.lower():
        store = tmp_path.with_name(f"{tmp_path.name}-mlflow") / "mlflow.db"
        store.parent.mkdir(exist_ok=True)
    if request.node.get_closest_marker("fresh_store") is None:
        shutil.copyfile(request.getfixturevalue("migrated_store"), store)
    monkeypatch.setenv("FLOW_HOME", str(tmp_path / "flow-home"))
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "flow-config.yaml"))
    monkeypatch.setenv("FLOW_PROVIDER", "local")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
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
