"""``import hydraflow`` stays light; plots are labelled PNGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from analysis_stores import StoreData

from hydraflow import RunCollection
from hydraflow.core.errors import ColumnTypeError, UnknownKeyError


def test_import_hydraflow_loads_neither_mlflow_nor_polars() -> None:
    code = (
        "import sys, hydraflow, hydraflow.core, hydraflow.conventions\n"
        "heavy = [m for m in ('mlflow', 'polars', 'pyarrow', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "from hydraflow import Run, RunCollection\n"
        "print('polars' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["", "True"]


def test_reading_a_sqlite_store_imports_neither_mlflow_nor_pyarrow(sqlite_store: StoreData) -> None:
    """Loading stays lean: the frame and a metric history come through ADBC's Arrow C stream."""
    code = (
        "import sys\n"
        "from hydraflow import RunCollection\n"
        f"runs = RunCollection.load('train', tracking_uri={sqlite_store.uri!r})\n"
        "print(runs.to_frame().height, runs.first().metric_history('loss').height > 0)\n"
        "print(','.join(m for m in ('mlflow', 'pyarrow', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows, imported = result.stdout.splitlines()
    assert rows == f"{len(RunCollection.load('train', tracking_uri=sqlite_store.uri))} True"
    assert imported == ""


def test_plot_png_and_figure(sqlite_store: StoreData, tmp_path: Path) -> None:
    runs = RunCollection.load("train", tracking_uri=sqlite_store.uri)
    path = runs.plot(x="lr", y="metrics.loss", color="model.type", path=tmp_path / "loss.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 400 and image.shape[1] > 600
    figure = runs.plot(x="dataset.name", y="metrics.accuracy")  # categorical x, no file
    axes = figure.axes[0]
    assert axes.get_xlabel() == "dataset.name" and axes.get_ylabel() == "accuracy"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["cifar", "mnist"]
    assert axes.get_title() == "accuracy vs dataset.name  (6 runs)"
    log_axes = runs.plot(x="lr", y="metrics.loss").axes[0]
    assert log_axes.get_xscale() == "log"  # lr spans two decades
    with pytest.raises(ColumnTypeError, match="must be numeric"):
        runs.plot(x="lr", y="model.type")
    with pytest.raises(UnknownKeyError):
        runs.plot(x="lr", y="metrics.nope")


@pytest.fixture(autouse=True)
def _close_figures() -> object:
    yield None
    import matplotlib.pyplot as plt

    plt.close("all")
