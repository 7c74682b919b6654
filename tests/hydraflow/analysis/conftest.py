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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from hydraflow.conventions import (
    TAG_KEY_PREFIX,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
    TAG_SWEEP_ID,
    sanitize_key,
)

BASE_MS = 1_700_000_000_000
ODD_KEY = "opt@lr"  # MLflow refuses '@' in a key: stored sanitised, original in a tag
CONFIG_YAML = "model:\n  type: lstm\nlr: 0.1\n"


@dataclass
class StoreData:
    """What :func:`populate` wrote, for tests to compare against."""

    uri: str
    kind: str
    root: Path
    job_ids: list[str] = field(default_factory=list)
    sweep_run_id: str = ""
    deleted_id: str = ""
    other_id: str = ""
    failed_id: str = ""


JOBS = [  # model.type, lr, dataset.name
    ("lstm", 0.1, "mnist"),
    ("lstm", 0.01, "cifar"),
    ("cnn", 0.1, "mnist"),
    ("cnn", 0.001, "cifar"),
    ("lstm", 0.001, "mnist"),
    ("cnn", 0.01, "cifar"),
]


def populate(client: MlflowClient, data: StoreData, artifact_root: str | None) -> StoreData:
    """Experiment ``train``: a sweep parent, 6 jobs (one FAILED, late keys, a NaN), one deleted run;
    experiment ``other``: one run."""
    exp = client.create_experiment(
        "train", artifact_location=f"{artifact_root}/train" if artifact_root else None
    )
    parent = client.create_run(
        exp, start_time=BASE_MS, run_name="sweep", tags={TAG_ROLE: "sweep", TAG_SWEEP_ID: "S1"}
    )
    data.sweep_run_id = parent.info.run_id
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=BASE_MS + 99_000)
    for i, (model, lr, dataset) in enumerate(JOBS):
        start = BASE_MS + (i + 1) * 1000
        run = client.create_run(exp, start_time=start, run_name=f"job-{i}")
        rid = run.info.run_id
        params = [
            Param("model.type", model),
            Param("lr", str(lr)),
            Param("dataset.name", dataset),
            Param("layers", "[64, 64]"),
            Param("use_amp", str(i % 2 == 0)),
            Param("batch", str(16 * (i + 1))),
            Param("mixed", "auto" if i == 3 else str(i)),
            Param("maybe", "None" if i == 0 else str(i)),
        ]
        if i >= 4:
            params.append(Param("extra", f"late-{i}"))
        tags = [
            RunTag(TAG_SWEEP_ID, "S1"),
            RunTag(TAG_ROLE, "job"),
            RunTag(TAG_PARENT_RUN_ID, parent.info.run_id),
            RunTag("hydraflow.job_num", str(i)),
        ]
        if i == 0:
            safe = sanitize_key(ODD_KEY)
            params.append(Param(safe, "0.5"))
            tags.append(RunTag(f"{TAG_KEY_PREFIX}{safe}", ODD_KEY))
        metrics = [Metric("loss", 1.0 / (i + 1) + (2 - s) * 0.1, start + s, s) for s in range(3)]
        metrics.append(Metric("accuracy", 0.5 + i / 20, start, 0))
        if i == 2:
            metrics.append(Metric("val", float("nan"), start, 0))
        client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        if i == 0:
            client.log_text(rid, CONFIG_YAML, ".hydra/config.yaml")
        status = "FAILED" if i == 5 else "FINISHED"
        client.set_terminated(rid, status, end_time=start + 500)
        data.job_ids.append(rid)
    data.failed_id = data.job_ids[5]
    gone = client.create_run(exp, start_time=BASE_MS + 50_000, run_name="deleted")
    client.delete_run(gone.info.run_id)
    data.deleted_id = gone.info.run_id
    other = client.create_experiment(
        "other", artifact_location=f"{artifact_root}/other" if artifact_root else None
    )
    run = client.create_run(other, start_time=BASE_MS, run_name="o")
    client.log_param(run.info.run_id, "lr", "1")
    client.set_terminated(run.info.run_id)
    data.other_id = run.info.run_id
    return data


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
        deadline = time.monotonic() + 90
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
                _unavailable(f"mlflow server on port {port} did not answer within 90 s")
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
