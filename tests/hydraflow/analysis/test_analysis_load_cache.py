"""Repeated loads of a sqlite store read only what changed, and always equal a load from scratch:
new runs, new params/metrics/tags of old runs, tag and metric updates, deleted, restored and
permanently removed runs."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from analysis_stores import StoreData
from mlflow import MlflowClient
from polars.testing import assert_frame_equal
from pytest_mock import MockerFixture

from hydraflow import RunCollection
from hydraflow.core import refresh
from hydraflow.core.loaders import sqlite_cache
from hydraflow.core.store import open_store


@pytest.fixture
def store_copy(sqlite_store: StoreData, tmp_path: Path) -> str:
    shutil.copy(sqlite_store.root / "mlflow.db", tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _load_both(uri: str) -> RunCollection:
    """The incremental load, checked against a load from scratch."""
    runs = RunCollection.load("train", tracking_uri=uri)
    kept = dict(sqlite_cache._SNAPSHOTS)
    sqlite_cache.forget()
    scratch = RunCollection.load("train", tracking_uri=uri)
    sqlite_cache._SNAPSHOTS.update(kept)
    assert_frame_equal(runs.to_frame(), scratch.to_frame())
    return runs


def test_incremental_loads_equal_loads_from_scratch(store_copy: str) -> None:
    sqlite_cache.forget()
    first = RunCollection.load("train", tracking_uri=store_copy)
    snapshot = sqlite_cache._SNAPSHOTS[open_store(store_copy).location]
    again = RunCollection.load("train", tracking_uri=store_copy)  # nothing changed
    assert sqlite_cache._SNAPSHOTS[open_store(store_copy).location] is snapshot
    assert_frame_equal(first.to_frame(), again.to_frame())

    client = MlflowClient(store_copy)
    experiment = client.get_experiment_by_name("train")
    assert experiment is not None
    new = client.create_run(experiment.experiment_id, run_name="late")
    client.log_param(new.info.run_id, "lr", "0.5")
    client.log_param(new.info.run_id, "brand_new", "x")
    client.log_metric(new.info.run_id, "loss", 0.01)
    client.set_terminated(new.info.run_id)
    runs = _load_both(store_copy)
    assert len(runs) == len(first) + 1 and "brand_new" in runs

    # The frame brought up to date, not rebuilt: a new run's value retypes a column, a change to
    # the runs table alone (status) is seen, a column of a run that left goes with it
    client.log_param(new.info.run_id, "batch", "many")
    assert _load_both(store_copy).to_frame()["params.batch"].dtype == pl.String
    client.update_run(new.info.run_id, status="KILLED")
    assert _load_both(store_copy).filter(run_id=new.info.run_id).one().info.status == "KILLED"
    client.delete_run(new.info.run_id)
    runs = _load_both(store_copy)
    assert "brand_new" not in runs and runs.to_frame()["params.batch"].dtype == pl.Int64
    client.restore_run(new.info.run_id)

    old = first[0].info.run_id
    client.set_tag(old, "note", "changed later")  # a tag updated in place
    client.log_metric(old, "loss", 123.0, step=99)  # a newer latest value
    client.log_metric(old, "accuracy", 0.0, step=-5)  # an older step: latest unchanged
    runs = _load_both(store_copy)
    assert runs.filter(run_id=old).one().metrics["loss"] == 123.0

    client.delete_run(old)
    assert old not in _load_both(store_copy)["run_id"].to_list()
    client.restore_run(old)
    assert old in _load_both(store_copy)["run_id"].to_list()

    gone = runs[1].info.run_id  # removed for good, as mlflow gc does
    with sqlite3.connect(open_store(store_copy).location) as conn:
        for table in ("metrics", "latest_metrics", "params", "tags", "runs"):
            conn.execute(f"DELETE FROM {table} WHERE run_uuid = ?", (gone,))
    assert gone not in _load_both(store_copy)["run_id"].to_list()

    # A run removed for good, then a new one whose rows get the freed rowids back (SQLite reuses
    # the highest rowids): the row counts add up, only the vanished run tells
    only_params = client.create_run(experiment.experiment_id, run_name="params only")
    client.log_param(only_params.info.run_id, "soon_gone", "1")
    client.log_param(only_params.info.run_id, "lr", "0.125")
    _load_both(store_copy)
    with sqlite3.connect(open_store(store_copy).location) as conn:
        for table in ("params", "tags", "runs"):
            conn.execute(f"DELETE FROM {table} WHERE run_uuid = ?", (only_params.info.run_id,))
    newer = client.create_run(experiment.experiment_id, run_name="newer")
    client.log_param(newer.info.run_id, "lr", "0.25")
    client.log_param(newer.info.run_id, "other_new", "y")
    runs = _load_both(store_copy)
    assert runs.filter(run_id=newer.info.run_id).one().params["other_new"] == "y"
    assert "soon_gone" not in runs


def test_a_repeated_load_of_an_unchanged_store_reads_nothing(
    store_copy: str, mocker: MockerFixture
) -> None:
    sqlite_cache.forget()
    reads = mocker.spy(refresh, "load_tables")
    first = RunCollection.load("train", tracking_uri=store_copy)
    shown = first.to_frame()
    shown.insert_column(0, shown["run_id"].alias("mine"))  # a user changing the frame in place
    second = RunCollection.load("train", tracking_uri=store_copy)
    assert reads.call_count == 1  # the second load read nothing
    assert "mine" not in second.to_frame().columns
    assert_frame_equal(second.to_frame(), first.to_frame())
    MlflowClient(store_copy).set_tag(first[0].info.run_id, "late", "yes")
    third = RunCollection.load("train", tracking_uri=store_copy)
    assert reads.call_count == 2 and third[0].tags["late"] == "yes"
