"""A real ``mlflow server`` on a free loopback port for tests (sqlite backend, served artifacts).

Tests share one server per session: the ``tracking_server`` fixture of ``tests/conftest.py`` (each
test writes to experiments of its own names there). :func:`mlflow_server` starts one for other uses
(``from mlflow_server import mlflow_server``; ``tests/`` is on ``sys.path``). When the server cannot
start, the test fails with a clear message under ``CI=true`` and is skipped elsewhere.

The server runs without MLflow's job execution (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): with
it, ``mlflow server`` also starts eight huey consumer processes for GenAI jobs nobody here submits,
which tripled its start-up time on this 2-core machine (16 s against 45-64 s under load).
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``.

    Attributes:
        uri: Its ``http://127.0.0.1:<port>`` address.
        root: Its folder: ``server.db`` (the sqlite backend), ``artifacts/``, ``server.log``.
    """

    uri: str
    root: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def mlflow_server(root: Path, migrated_db: Path | None = None) -> Iterator[str]:
    """Start a server in ``root``; yield its URI; stop it.

    Args:
        root: Folder for the server's store, artifacts and log.
        migrated_db: An already migrated store to start from (the server starts sooner).
    """
    root.mkdir(parents=True, exist_ok=True)
    if migrated_db is not None:
        shutil.copy(migrated_db, root / "server.db")
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    port = _free_port()
    with (root / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [
                str(mlflow_bin) if mlflow_bin.exists() else "mlflow",
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
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
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
                        f"mlflow server exited ({proc.returncode}): "
                        f"{(root / 'server.log').read_text()[-800:]}"
                    )
                try:
                    if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    _unavailable(f"mlflow server on port {port} did not answer within 150 s")
                time.sleep(0.1)
            yield uri
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
