"""Real MLflow stores for the analysis tests: sqlite, a file store, and a live ``mlflow server``.

Each store gets the same runs (:func:`populate`), built once per session with MlflowClient, since
the tests only read them. Tests that write (Run.create, tracking) use ``fresh_uri`` instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from analysis_stores import StoreData, populate
from mlflow import MlflowClient


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def server_store(tmp_path_factory: pytest.TempPathFactory, empty_db: Path) -> Iterator[StoreData]:
    """A real ``mlflow server`` (sqlite backend, served artifacts) on a free loopback port."""
    root = tmp_path_factory.mktemp("server-store")
    shutil.copy(empty_db, root / "server.db")  # already migrated: the server starts sooner
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow") or "mlflow"]
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            *command,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while True:
            if proc.poll() is not None:
                _unavailable(
                    f"mlflow server exited ({proc.returncode}): {(root / 'server.log').read_text()[-800:]}"
                )
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                _unavailable(f"mlflow server on port {port} did not answer within 150 s")
            time.sleep(0.5)
        data = StoreData(uri=uri, kind="server", root=root)
        yield populate(MlflowClient(uri), data, None)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(params=["sqlite", "file", "server"])
def any_store(request: pytest.FixtureRequest) -> StoreData:
    """Each kind of store in turn."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite store to copy (migrating one takes seconds)."""
    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def fresh_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_db: Path) -> Iterator[str]:
    """An empty sqlite store as MLFLOW_TRACKING_URI, cwd in tmp_path; MLflow globals restored.

    The database is a copy of ``empty_db``."""
    import mlflow

    shutil.copy(empty_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
