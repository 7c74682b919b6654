"""A new sqlite store is a copy of the cached migrated one, and works as one MLflow made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hydraflow._mlflow_store import client_for
from hydraflow._store_template import create_from_template


def test_a_new_store_is_copied_and_mlflow_adds_its_default_experiment_in_place(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # migrated_store was made through client_for: the template of this MLflow version exists
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    assert create_from_template(uri)
    assert not create_from_template(uri)  # never over an existing store
    assert not [p for p in (tmp_path / "new").iterdir() if p.name != "mlflow.db"]  # nothing staged
    client = client_for(uri)
    (default,) = client.search_experiments()
    assert default.name == "Default"
    # located where MLflow puts it for a store it made here, not where the template was made
    assert default.artifact_location == str(work / "mlruns" / "0")
    experiment = client.create_experiment("train")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "loss", 0.5)
    client.set_terminated(run.info.run_id)
    reread = MlflowClient(uri).get_run(run.info.run_id)
    assert reread.data.metrics == {"loss": 0.5} and reread.info.status == "FINISHED"


def test_other_stores_are_left_to_mlflow(tmp_path: Path) -> None:
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"")
    for uri in (
        f"sqlite:///{existing}",  # there already (even empty: someone is making it)
        f"sqlite:///{tmp_path / 'q.db'}?timeout=5",
        "sqlite://",
        "sqlite:///:memory:",
        f"file://{tmp_path / 'mlruns'}",
        "http://127.0.0.1:5000",
    ):
        assert not create_from_template(uri), uri
    assert existing.read_bytes() == b""
    assert sorted(os.listdir(tmp_path)) == ["existing.db"]


def test_a_store_is_made_at_the_file_mlflow_reads_the_uri_as(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert create_from_template("sqlite:///my%20runs.db")  # relative, percent-encoded
    assert os.listdir(tmp_path) == ["my runs.db"]
