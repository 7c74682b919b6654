"""RunCollection: loading, selecting, sorting, aggregating, grouping, indexing — and each bad input."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from analysis_stores import JOBS, StoreData

from hydraflow import Run, RunCollection
from hydraflow.core.errors import (
    ColumnTypeError,
    ExperimentNotFoundError,
    RunSelectionError,
    StoreNotFoundError,
    UnknownKeyError,
)


@pytest.fixture
def runs(sqlite_store: StoreData) -> RunCollection:
    return RunCollection.load("train", tracking_uri=sqlite_store.uri)


def test_load_keeps_jobs_in_start_order_without_sweep_parent_or_deleted(
    runs: RunCollection, sqlite_store: StoreData
) -> None:
    assert len(runs) == len(JOBS)
    assert [r.info.run_id for r in runs] == sqlite_store.job_ids
    with_parent = RunCollection.load(
        "train", tracking_uri=sqlite_store.uri, include_sweep_runs=True
    )
    assert sqlite_store.sweep_run_id in with_parent.to_frame()["run_id"].to_list()
    assert sqlite_store.deleted_id not in with_parent.to_frame()["run_id"].to_list()


def test_load_all_experiments_and_by_sweep(sqlite_store: StoreData) -> None:
    everything = RunCollection.load(tracking_uri=sqlite_store.uri)
    assert set(everything.to_frame()["experiment"].to_list()) == {"train", "other"}
    assert len(RunCollection.load("train", tracking_uri=sqlite_store.uri, sweep_id="S1")) == 6
    with pytest.raises(RunSelectionError, match=r"no run of sweep 'S2'.*Nearest sweep ids: S1"):
        RunCollection.load("train", tracking_uri=sqlite_store.uri, sweep_id="S2")


def test_load_uses_mlflow_tracking_uri(
    sqlite_store: StoreData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store.uri)
    assert len(RunCollection.load("train")) == 6


def test_load_bad_inputs(
    sqlite_store: StoreData, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ExperimentNotFoundError, match=r"'trian' not found.*Nearest experiments: train"
    ):
        RunCollection.load("trian", tracking_uri=sqlite_store.uri)
    with pytest.raises(StoreNotFoundError, match=r"does not exist"):
        RunCollection.load("train", tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()  # reading never creates a store
    with pytest.raises(TypeError, match=r"experiment must be a name or a list of names, not 123"):
        RunCollection.load(123, tracking_uri=sqlite_store.uri)  # type: ignore[arg-type]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(StoreNotFoundError, match=r"mlflow.db"):
        RunCollection.load("train")


def test_filter_by_dict_kwargs_lists_ranges_expr_and_callable(runs: RunCollection) -> None:
    lstm = runs.filter({"model.type": "lstm"})
    assert [r.params["lr"] for r in lstm] == [0.1, 0.01, 0.001]
    assert len(runs.filter(model__type="cnn", dataset__name="cifar")) == 2
    assert len(runs.filter(lr=[0.1, 0.01])) == 4
    assert len(runs.filter(lr=(0.005, 0.5))) == 4
    assert len(runs.filter(lr=(None, 0.01))) == 4
    assert len(runs.filter(pl.col("metrics.accuracy") > 0.7)) == 1
    assert len(runs.filter(lambda run: run.params["batch"] >= 64)) == 3
    assert len(runs.filter({"metrics.accuracy": (0.62, None)})) == 3
    assert len(runs.filter(lr="0.1")) == 2  # text of a number matches the typed column
    assert len(runs.filter(mixed=4)) == 1 and len(runs.filter(mixed="auto")) == 1  # a text column
    assert len(runs.filter(extra=None)) == 4  # missing (late) key
    assert len(runs.filter({"tags.hydraflow.job_num": "2"})) == 1
    assert len(runs.filter({"info.status": "FAILED"})) == 1
    assert len(runs.filter(use_amp=True)) == 3


def test_exclude_is_the_complement(runs: RunCollection) -> None:
    kept = runs.exclude({"model.type": "lstm"})
    assert {r.params["model.type"] for r in kept} == {"cnn"}
    assert len(runs.exclude(extra="late-4")) == 5  # runs without the key stay


def test_filter_bad_inputs(runs: RunCollection) -> None:
    with pytest.raises(UnknownKeyError, match=r"no run has the key 'lrr'.*Nearest keys: lr"):
        runs.filter(lrr=0.1)
    with pytest.raises(UnknownKeyError, match=r"metrics.loss"):
        runs.filter({"metrics.los": 1})
    with pytest.raises(ValueError, match=r"tuple means a \(low, high\) range"):
        runs.filter(lr=(1, 2, 3))
    with pytest.raises(ValueError, match=r"'abc' cannot be compared with 'params\.lr'.*Float64"):
        runs.filter(lr="abc")
    with pytest.raises(ValueError, match=r"'yes' cannot be compared with 'params\.use_amp'"):
        runs.filter(use_amp=["yes"])
    with pytest.raises(ValueError, match=r"'a' cannot be compared"):
        runs.filter(lr=("a", 1))
    with pytest.raises(TypeError, match=r"filter conditions are dicts"):
        runs.filter(42)
    with pytest.raises(
        UnknownKeyError, match=r"names the column 'lr'.*Nearest columns: params\.lr"
    ):
        runs.filter(pl.col("lr") > 0.01)


def test_sort_first_last_one_best(runs: RunCollection) -> None:
    ordered = runs.sort("metrics.loss")
    losses = [r.metrics["loss"] for r in ordered]
    assert losses == sorted(losses)
    assert runs.sort("lr", "batch", descending=True).first().params == runs[2].params
    assert runs.first().info.run_name == "job-0" and runs.last().info.run_name == "job-5"
    assert runs.filter(model__type="cnn", lr=0.001).one().info.run_name == "job-3"
    assert runs.best("metrics.loss").info.run_name == "job-5"
    assert runs.best("metrics.accuracy", "max").info.run_name == "job-5"


def test_selection_bad_inputs(runs: RunCollection) -> None:
    with pytest.raises(RunSelectionError, match=r"one\(\) expects exactly 1 run, found 6"):
        runs.one()
    none = runs.filter(model__type="rnn")
    with pytest.raises(RunSelectionError, match=r"found 0"):
        none.one()
    with pytest.raises(RunSelectionError, match=r"empty"):
        none.first()
    with pytest.raises(RunSelectionError, match=r"no run has a value for 'metrics.val'"):
        runs.best("metrics.val")  # its only value is NaN
    with pytest.raises(ValueError, match=r"mode is 'min' or 'max'"):
        runs.best("metrics.loss", "lowest")  # type: ignore[arg-type]


def test_aggregates(runs: RunCollection) -> None:
    accuracy = [0.5 + i / 20 for i in range(6)]
    assert runs.mean("metrics.accuracy") == pytest.approx(sum(accuracy) / 6)
    assert runs.min("metrics.accuracy") == pytest.approx(0.5)
    assert runs.max("lr") == pytest.approx(0.1)
    assert runs.std("batch") == pytest.approx(pl.Series([16 * (i + 1) for i in range(6)]).std())
    assert runs.count() == 6 and runs.count("extra") == 2
    with pytest.raises(
        ColumnTypeError, match=r"mean\('model.type'\) needs a numeric column.*String"
    ):
        runs.mean("model.type")
    with pytest.raises(UnknownKeyError):
        runs.mean("metrics.nope")


def test_group_by(runs: RunCollection) -> None:
    by_dataset = runs.group_by("dataset.name").mean("metrics.accuracy")
    assert by_dataset.columns == ["dataset.name", "metrics.accuracy"]
    assert by_dataset["dataset.name"].to_list() == ["cifar", "mnist"]
    assert by_dataset["metrics.accuracy"].to_list() == pytest.approx([0.65, 0.6])
    table = runs.group_by("model.type", "lr").agg(pl.col("metrics.loss").min())
    assert table.height == 6 and table.columns == ["model.type", "lr", "metrics.loss"]
    assert table.row(0)[:2] == ("cnn", 0.001)
    counts = runs.group_by("model.type").count()
    assert counts.to_dicts() == [
        {"model.type": "cnn", "count": 3},
        {"model.type": "lstm", "count": 3},
    ]
    grouped = runs.group_by("model.type")
    assert len(grouped) == 2
    assert repr(grouped) == "GroupBy(keys=['model.type'], 2 groups of 6 runs)"
    assert [(key, len(group)) for key, group in grouped] == [(("cnn",), 3), (("lstm",), 3)]
    assert runs.group_by("model.type").max("lr")["lr"].to_list() == [0.1, 0.1]
    with pytest.raises(ColumnTypeError):
        runs.group_by("model.type").mean("dataset.name")
    with pytest.raises(UnknownKeyError, match=r"Nearest keys: dataset.name"):
        runs.group_by("dataset.nam")
    with pytest.raises(UnknownKeyError, match=r"'loss'.*Nearest columns: metrics\.loss"):
        runs.group_by("model.type").agg(pl.col("loss").min())


def test_indexing_iteration_and_columns(runs: RunCollection) -> None:
    assert isinstance(runs[0], Run) and runs[-1].info.run_name == "job-5"
    assert isinstance(runs[1:3], RunCollection) and len(runs[1:3]) == 2
    assert runs[1:3][0].info.run_name == "job-1"
    loss = runs["metrics.loss"]
    assert isinstance(loss, pl.Series) and loss.len() == 6
    assert runs["model.type"].to_list() == [m for m, _, _ in JOBS]
    assert [run.info.run_name for run in runs] == [f"job-{i}" for i in range(6)]
    assert {"lr", "metrics.loss", "info.status"} <= set(runs.keys())
    assert "lr" in runs and "metrics.loss" in runs and "nope" not in runs
    assert repr(runs) == "RunCollection(6 runs, experiments=['train'])"
    with pytest.raises(IndexError, match=r"out of range for 6 runs"):
        runs[6]
    with pytest.raises(UnknownKeyError):
        runs["metrics.nope"]


def test_to_frame_columns(runs: RunCollection) -> None:
    frame = runs.to_frame()
    assert frame.columns[:8] == [
        "run_id",
        "run_name",
        "experiment_id",
        "experiment",
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
    ]
    assert frame["status"].to_list() == ["FINISHED"] * 5 + ["FAILED"]
    assert all(c.startswith(("params.", "metrics.", "tags.")) for c in frame.columns[8:])


def test_not_an_mlflow_store(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(
        StoreNotFoundError, match=r"not a readable MLflow sqlite store.*no such table"
    ):
        RunCollection.load("train", tracking_uri=str(plain))
    text = tmp_path / "notes.db"
    text.write_text("hello")
    with pytest.raises(StoreNotFoundError, match=r"file is not a database"):
        RunCollection.load("train", tracking_uri=str(text))


WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")  # as a sweep's job does while it logs
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_load_waits_for_a_writers_lock(sqlite_store: StoreData, tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    shutil.copy(sqlite_store.root / "mlflow.db", db)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), "0.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
        probe = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # the lock is real
            probe.execute("SELECT COUNT(*) FROM runs").fetchone()
        probe.close()
        assert len(RunCollection.load("train", tracking_uri=str(db))) == 6
    finally:
        writer.wait(timeout=60)
