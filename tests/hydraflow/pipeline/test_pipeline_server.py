"""A pipeline against a real ``mlflow server`` on loopback: artifacts are uploaded, then downloaded
again for a cache hit (the remote-store path, where a stage cannot write into the store directly)."""

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
from mlflow.tracking import MlflowClient
from pipeline_helpers import SEED_CFG, count_calls, empty_store_file, seed_pipeline, stage_runs

__all__ = ["empty_store_file"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store_file: Path
) -> Iterator[str]:
    shutil.copyfile(empty_store_file, tmp_path / "server.db")  # skip the slow migration
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited: {(tmp_path / 'server.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer /health within 180 s")
            time.sleep(0.5)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("PIPELINE_TEST_CALLS", str(tmp_path))
        monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        monkeypatch.chdir(tmp_path)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.timeout(400)
def test_remote_store_uploads_outputs_and_downloads_them_for_a_cache_hit(
    server: str, tmp_path: Path
) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(SEED_CFG)
    first = seed_pipeline().run(cfg)

    train = first.outputs["model_training"]
    client = MlflowClient(server)
    uploaded = {a.path for a in client.list_artifacts(train.run_id, "outputs")}
    assert uploaded == {"outputs/model.txt"}
    assert not str(train.output_dir).startswith(str(tmp_path / "server-artifacts"))

    second = seed_pipeline().run(cfg)

    assert second.skipped == ["data_preparation", "model_training", "model_evaluation"]
    assert dict(second) == dict(first)
    reused = second.outputs["model_training"].files["model.txt"]
    assert reused.read_text() == "8.0" and reused != train.files["model.txt"]  # a downloaded copy
    assert count_calls(tmp_path, "model_training") == 1
    assert len(stage_runs(server)) == 3
