"""Learning curves: ``metric_history`` of a whole collection in one read per store, checked value
by value against MLflow's own ``get_metric_history`` on each kind of store, and ``plot_history``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from analysis_stores import StoreData
from mlflow import MlflowClient

from hydraflow import RunCollection
from hydraflow.cli import main
from hydraflow.core import history
from hydraflow.core.errors import ColumnTypeError, RunSelectionError, UnknownKeyError


def _mlflow_rows(uri: str, run_ids: list[str], keys: list[str]) -> list[tuple[object, ...]]:
    """The truth: MLflow's get_metric_history per run and key, in the order metric_history keeps."""
    client = MlflowClient(uri)
    rows: list[tuple[object, ...]] = []
    for run_id in run_ids:
        for key in sorted(keys):
            found = client.get_metric_history(run_id, key)
            rows += sorted((run_id, key, m.step, m.timestamp, m.value) for m in found)
    return rows


def _rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    epoch_ms = frame["timestamp"].dt.epoch("ms").to_list()
    return [
        (r, k, s, t, v)
        for (r, k, s, v), t in zip(
            frame.select("run_id", "key", "step", "value").iter_rows(), epoch_ms, strict=True
        )
    ]


def _same(got: list[tuple[object, ...]], want: list[tuple[object, ...]]) -> bool:
    def norm(row: tuple[object, ...]) -> tuple[object, ...]:
        value = row[4]
        return (*row[:4], "nan" if isinstance(value, float) and math.isnan(value) else value)

    return [norm(r) for r in got] == [norm(r) for r in want]


def test_history_of_every_run_matches_mlflow(any_store: StoreData) -> None:
    runs = RunCollection.load("train", tracking_uri=any_store.uri)
    frame = runs.metric_history(["loss", "metrics.accuracy", "val"], params=["model.type", "lr"])
    assert frame.columns == ["run_id", "key", "step", "timestamp", "value", "model.type", "lr"]
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    ids = runs["run_id"].to_list()
    assert _same(_rows(frame), _mlflow_rows(any_store.uri, ids, ["loss", "accuracy", "val"]))
    assert frame["run_id"].unique(maintain_order=True).to_list() == ids  # the collection's order
    by_run = dict(zip(ids, runs["model.type"].to_list(), strict=True))
    assert all(by_run[r] == m for r, m in frame.select("run_id", "model.type").iter_rows())
    one = runs.filter(model__type="cnn").metric_history("loss")
    assert one.columns == ["run_id", "key", "step", "timestamp", "value"]
    assert one.height == 3 * 3 and set(one["key"]) == {"loss"}


def test_server_pages_through_full_replies(
    server_store: StoreData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies capped at 2 values and 2 runs per request: batches split, single runs page on."""
    monkeypatch.setattr(history, "_BULK_VALUES", 2)
    monkeypatch.setattr(history, "_BULK_RUNS", 2)
    runs = RunCollection.load("train", tracking_uri=server_store.uri)
    frame = runs.metric_history(["loss", "accuracy"])
    ids = runs["run_id"].to_list()
    assert frame.height == 6 * 3 + 6
    assert _same(_rows(frame), _mlflow_rows(server_store.uri, ids, ["loss", "accuracy"]))


def test_bad_requests_get_one_clear_message(sqlite_store: StoreData) -> None:
    runs = RunCollection.load("train", tracking_uri=sqlite_store.uri)
    with pytest.raises(UnknownKeyError, match=r"metric 'los'\. Nearest metrics: loss"):
        runs.metric_history("los")
    with pytest.raises(ColumnTypeError, match=r"'params\.model\.type' is not a metric"):
        runs.metric_history("model.type")
    with pytest.raises(RunSelectionError, match="empty RunCollection"):
        runs.filter(lr=99).metric_history("loss")
    with pytest.raises(UnknownKeyError, match="val"):  # only run 2 logged it
        runs.filter(model__type="lstm").metric_history("val")
    with pytest.raises(UnknownKeyError, match=r"modle\.type"):
        runs.metric_history("loss", params=["modle.type"])
    with pytest.raises(ValueError, match="band is one of std, minmax, none"):
        runs.plot_history("loss", band="sem")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the metric must be a key"):
        runs.metric_history(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a metric key"):
        runs.metric_history([])
    assert runs.metric_history("loss", params=[]).columns[-1] == "value"


def test_log_axis_refuses_values_at_or_below_zero(fresh_uri: str) -> None:
    client = MlflowClient(fresh_uri)
    run = client.create_run(client.create_experiment("neg"))
    for step, value in enumerate([0.5, -0.2, 0.1]):
        client.log_metric(run.info.run_id, "delta", value, step=step)
    runs = RunCollection.load("neg")
    with pytest.raises(ColumnTypeError, match=r"values go down to -0\.2"):
        runs.plot_history("delta", logy=True)


def test_plot_history_draws_the_mean_and_band_per_group(sqlite_store: StoreData) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    runs = RunCollection.load("train", tracking_uri=sqlite_store.uri)
    fig = runs.plot_history(["loss", "accuracy"], color="model.type", band="minmax", logy=True)
    assert isinstance(fig, Figure)
    try:
        loss_ax, accuracy_ax = fig.axes
        assert loss_ax.get_ylabel() == "loss" and loss_ax.get_yscale() == "log"
        lines = {line.get_label(): line for line in loss_ax.get_lines()}
        assert set(lines) == {"cnn  (3 runs)", "lstm  (3 runs)"}
        truth = pl.DataFrame(
            _mlflow_rows(
                sqlite_store.uri, runs.filter(model__type="cnn")["run_id"].to_list(), ["loss"]
            ),
            schema=["run_id", "key", "step", "timestamp", "value"],
            orient="row",
        )
        mean = truth.group_by("step").agg(pl.col("value").mean()).sort("step")
        cnn = lines["cnn  (3 runs)"]
        assert np.asarray(cnn.get_xdata()).tolist() == mean["step"].to_list()
        assert np.asarray(cnn.get_ydata()).tolist() == pytest.approx(mean["value"].to_list())
        assert len(loss_ax.collections) == 2  # one band per group
        assert fig.get_suptitle() == "loss, accuracy by model.type  (6 runs; mean, min–max)"
        assert accuracy_ax.get_legend() is not None
    finally:
        plt.close(fig)


def test_cli_history_plot(
    sqlite_store: StoreData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "curves.png"
    argv = ["plot", "train", "--history", "loss", "--color", "model.type", "--logy", "-o"]
    assert main([*argv, str(target), "--tracking-uri", sqlite_store.uri]) == 0
    assert "wrote" in capsys.readouterr().out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sys.modules.get("hydraflow.plot") is not None
