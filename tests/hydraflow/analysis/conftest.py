"""Real MLflow stores for the analysis tests: sqlite, a file store, and a live ``mlflow server``.

Each store gets the same runs (:func:`populate`), built once per session with MlflowClient, since
the tests only read them. Tests that write (Run.create, tracking) use ``fresh_uri`` instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from analysis_stores import StoreData, populate
from mlflow import MlflowClient
from mlflow_server import TrackingServer


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> StoreData:
    root = tmp_path_factory.mktemp("sqlite-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    data = StoreData(uri=uri, kind="sqlite", root=root)
    return populate(MlflowClient(uri), data, (root / "artifacts").as_uri())


@pytest.fixture(scope="session")
def file_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreData]:
    root = tmp_path_factory.mktemp("file-store") / "mlruns"
    saved = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        data = StoreData(uri=root.as_uri(), kind="file", root=root)
        yield populate(MlflowClient(root.as_uri()), data, None)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = saved


@pytest.fixture(scope="session")
def server_store(tracking_server: TrackingServer) -> StoreData:
    """The session's real ``mlflow server`` (sqlite backend, served artifacts; ``tests/conftest.py``)."""
    data = StoreData(uri=tracking_server.uri, kind="server", root=tracking_server.root)
    return populate(MlflowClient(tracking_server.uri), data, None)


@pytest.fixture(params=["sqlite", "file", "server"])
def any_store(request: pytest.FixtureRequest) -> StoreData:
    """Each kind of store in turn."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def fresh_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_store: Path
) -> Iterator[str]:
    """An empty sqlite store as MLFLOW_TRACKING_URI, cwd in tmp_path; MLflow globals restored.

    The database is a copy of ``migrated_store``."""
    import mlflow

    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
