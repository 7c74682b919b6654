"""A pipeline against a real ``mlflow server`` on loopback: artifacts are uploaded, then downloaded
again for a cache hit (the remote-store path, where a stage cannot write into the store directly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow_server import TrackingServer
from pipeline_helpers import SEED_CFG, count_calls, seed_pipeline, stage_runs


@pytest.fixture
def server(
    tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The session's mlflow server (the pipeline writes to its own experiment, ``pipeline``)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    monkeypatch.setenv("PIPELINE_TEST_CALLS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tracking_server.uri


@pytest.mark.timeout(400)
def test_remote_store_uploads_outputs_and_downloads_them_for_a_cache_hit(
    server: str, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(SEED_CFG)
    first = seed_pipeline().run(cfg)

    train = first.outputs["model_training"]
    client = MlflowClient(server)
    uploaded = {a.path for a in client.list_artifacts(train.run_id, "outputs")}
    assert uploaded == {"outputs/model.txt"}
    assert not str(train.output_dir).startswith(str(tracking_server.root / "artifacts"))

    second = seed_pipeline().run(cfg)

    assert second.skipped == ["data_preparation", "model_training", "model_evaluation"]
    assert dict(second) == dict(first)
    reused = second.outputs["model_training"].files["model.txt"]
    assert reused.read_text() == "8.0" and reused != train.files["model.txt"]  # a downloaded copy
    assert count_calls(tmp_path, "model_training") == 1
    assert len(stage_runs(server)) == 3
