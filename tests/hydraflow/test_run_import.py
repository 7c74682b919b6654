"""Runs logged in a job's own store land whole in the user's store, once."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from hydraflow.run_import import TAG_IMPORTED_FROM, import_runs, store_uri_for


def _stores(tmp_path: Path, migrated_store: Path) -> tuple[str, str]:
    """A job's own store (in ``job/``) and the user's store: new, already migrated sqlite stores."""
    (tmp_path / "job").mkdir()
    shutil.copyfile(migrated_store, tmp_path / "job" / "mlflow.db")
    shutil.copyfile(migrated_store, tmp_path / "user.db")
    src = store_uri_for(tmp_path / "job")
    assert src.endswith(str(tmp_path / "job" / "mlflow.db"))
    return src, f"sqlite:///{tmp_path / 'user.db'}"


def _log_job(uri: str, tmp_path: Path) -> str:
    client = MlflowClient(uri)
    exp = client.create_experiment("train", artifact_location=(tmp_path / "src-art").as_uri())
    run = client.create_run(exp, run_name="job-0", tags={"hydraflow.job_num": "0"})
    rid = run.info.run_id
    client.log_param(rid, "lr", "0.001")
    for step in range(5):
        client.log_metric(rid, "loss", 1.0 / (step + 1), step=step)
    note = tmp_path / "model.txt"
    note.write_text("weights")
    client.log_artifact(rid, str(note), "model")
    client.set_terminated(rid, "FINISHED")
    return rid


def test_import_copies_params_history_tags_artifacts_and_status(
    tmp_path: Path, migrated_store: Path
) -> None:
    src, dst = _stores(tmp_path, migrated_store)
    source_id = _log_job(src, tmp_path)

    mapping = import_runs(src, dst)

    client = MlflowClient(dst)
    copied = client.get_run(mapping[source_id])
    assert copied.data.params == {"lr": "0.001"}
    assert copied.data.tags["hydraflow.job_num"] == "0"
    assert copied.data.tags[TAG_IMPORTED_FROM] == source_id
    assert copied.info.status == "FINISHED"
    assert copied.info.run_name == "job-0"
    history = client.get_metric_history(copied.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    local = client.download_artifacts(copied.info.run_id, "model/model.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "weights"


def test_importing_twice_keeps_one_run(tmp_path: Path, migrated_store: Path) -> None:
    src, dst = _stores(tmp_path, migrated_store)
    _log_job(src, tmp_path)
    first = import_runs(src, dst)
    second = import_runs(src, dst)
    assert first == second
    mlflow.set_tracking_uri(dst)
    assert len(mlflow.search_runs(experiment_names=["train"])) == 1
