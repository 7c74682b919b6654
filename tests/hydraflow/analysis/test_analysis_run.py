"""Run: loading by id, run directory, artifact directory or list; its data, config and history."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from analysis_stores import BASE_MS, ODD_KEY, StoreData

from hydraflow import Run, RunCollection
from hydraflow.core import Run as CoreRun
from hydraflow.core.errors import RunNotFoundError, StoreNotFoundError, UnknownKeyError


def test_both_import_paths_give_the_same_class() -> None:
    assert Run is CoreRun


def test_load_by_id_in_every_store(any_store: StoreData) -> None:
    run = Run.load(any_store.job_ids[0], tracking_uri=any_store.uri)
    assert isinstance(run, Run)
    info = run.info
    assert (info.run_id, info.run_name, info.experiment_name, info.status) == (
        any_store.job_ids[0],
        "job-0",
        "train",
        "FINISHED",
    )
    assert info.start_time == datetime.fromtimestamp((BASE_MS + 1000) / 1000, tz=UTC)
    assert info.end_time == datetime.fromtimestamp((BASE_MS + 1500) / 1000, tz=UTC)
    assert run.params == {
        "model.type": "lstm",
        "lr": 0.1,
        "dataset.name": "mnist",
        "layers": [64, 64],
        "use_amp": True,
        "batch": 16,
        "mixed": 0,
        "maybe": None,
        ODD_KEY: 0.5,
    }
    assert run.metrics == {"loss": pytest.approx(1.0), "accuracy": pytest.approx(0.5)}
    assert run.tags["hydraflow.sweep_id"] == "S1"
    assert run.get("metrics.loss") == pytest.approx(1.0) and run.get("lr") == 0.1


def test_cfg_is_read_from_the_hydra_artifact(any_store: StoreData) -> None:
    runs = RunCollection.load("train", tracking_uri=any_store.uri)
    assert runs[0].cfg is not None
    assert runs[0].cfg.model.type == "lstm" and runs[0].cfg.lr == 0.1
    assert runs[1].cfg is None  # no config artifact


def test_metric_history(any_store: StoreData) -> None:
    run = Run.load(any_store.job_ids[1], tracking_uri=any_store.uri)
    history = run.metric_history("loss")
    assert history.columns == ["step", "timestamp", "value"]
    assert history["step"].to_list() == [0, 1, 2]
    assert history["value"].to_list() == pytest.approx([0.7, 0.6, 0.5])
    assert history.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert run.metric_history("metrics.accuracy").height == 1
    with pytest.raises(UnknownKeyError, match=r"no metric 'los'.*Nearest metrics: loss"):
        run.metric_history("los")


def test_load_file_store_run_directory_and_artifact_dir(file_store: StoreData) -> None:
    experiment_dir = next(
        p for p in file_store.root.iterdir() if (p / file_store.job_ids[0]).is_dir()
    )
    run_dir = experiment_dir / file_store.job_ids[0]
    run = Run.load(run_dir)
    assert run.info.run_id == file_store.job_ids[0] and run.params["model.type"] == "lstm"
    assert run.artifacts_dir == run_dir / "artifacts"
    assert (run.artifacts_dir / ".hydra" / "config.yaml").is_file()
    assert Run.load(run_dir / "artifacts").info.run_id == file_store.job_ids[0]
    pair = Run.load([str(experiment_dir / file_store.job_ids[2]), run_dir])
    assert isinstance(pair, RunCollection)
    assert [r.info.run_name for r in pair] == ["job-2", "job-0"]  # the order asked


def test_load_artifact_dir_of_sqlite_run(sqlite_store: StoreData) -> None:
    run = Run.load(sqlite_store.job_ids[0], tracking_uri=sqlite_store.uri)
    assert run.artifacts_dir.is_dir()
    again = Run.load(run.artifacts_dir, tracking_uri=sqlite_store.uri)
    assert again.info.run_id == run.info.run_id


def test_load_list_of_ids_mixed_params(sqlite_store: StoreData) -> None:
    runs = Run.load(sqlite_store.job_ids[3:6], tracking_uri=sqlite_store.uri)
    assert [r.info.run_name for r in runs] == ["job-3", "job-4", "job-5"]
    assert runs[1].params["extra"] == "late-4" and "extra" not in runs[0].params
    assert runs[2].info.status == "FAILED"


def test_load_bad_inputs(sqlite_store: StoreData, tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match=r"run '0{32}' not found"):
        Run.load("0" * 32, tracking_uri=sqlite_store.uri)
    with pytest.raises(RunNotFoundError, match="not found"):
        Run.load(sqlite_store.deleted_id, tracking_uri=sqlite_store.uri)
    with pytest.raises(RunNotFoundError, match="neither an existing run directory nor a run id"):
        Run.load(str(tmp_path / "mlruns" / "1" / "nope"))
    with pytest.raises(RunNotFoundError, match="is not a run directory"):
        Run.load(tmp_path)
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        Run.load("a" * 32, tracking_uri=str(tmp_path / "missing.db"))
    with pytest.raises(RunNotFoundError, match="got no run"):
        Run.load([])


def test_store_path_with_unusual_characters(sqlite_store: StoreData, tmp_path: Path) -> None:
    odd = tmp_path / "my store #1?" / "mlflow.db"
    odd.parent.mkdir()
    shutil.copy(sqlite_store.root / "mlflow.db", odd)
    runs = RunCollection.load("train", tracking_uri=str(odd))
    assert len(runs) == 6
    assert runs[0].metric_history("loss").height == 3
