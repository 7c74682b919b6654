"""The ``hydraflow`` CLI: runs table, JSON, CSV, filters, sort, limit, plot; errors are one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_stores import StoreData

from hydraflow.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_table(sqlite_store: StoreData, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "runs", "train", "--tracking-uri", sqlite_store.uri)
    assert code == 0
    assert "train: 6 of 6 runs" in out
    assert "model.type" in out and "metrics.loss" in out
    assert all(f"job-{i}" in out for i in range(6))


def test_runs_json_with_filter_sort_limit(
    sqlite_store: StoreData, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        "runs",
        "train",
        "--tracking-uri",
        sqlite_store.uri,
        "--filter",
        "model.type=lstm",
        "--sort",
        "lr",
        "--limit",
        "2",
        "--json",
    )
    assert code == 0
    records = json.loads(out)
    assert [r["run_name"] for r in records] == ["job-4", "job-1"]
    assert [r["params.lr"] for r in records] == [0.001, 0.01]


def test_runs_csv_descending(sqlite_store: StoreData, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "runs",
        "train",
        "--tracking-uri",
        sqlite_store.uri,
        "--sort",
        "metrics.accuracy",
        "--desc",
        "--csv",
        "--filter",
        "dataset.name=cifar",
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["run_name"] for r in rows] == ["job-5", "job-3", "job-1"]


def test_plot_writes_png(
    sqlite_store: StoreData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "loss.png"
    code, out, _ = _run(
        capsys,
        "plot",
        "train",
        "--tracking-uri",
        sqlite_store.uri,
        "--x",
        "lr",
        "--y",
        "metrics.loss",
        "--color",
        "model.type",
        "-o",
        str(target),
    )
    assert code == 0 and "wrote" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "trian"], "experiment 'trian' not found"),
        (["runs", "train", "--filter", "lrr=1"], "no run has the key 'lrr'"),
        (["runs", "train", "--filter", "lr"], "expected KEY=VALUE"),
        (["runs", "train", "--filter", "lr=fast"], "'fast' cannot be compared with 'params.lr'"),
        (["runs", "train", "--limit", "-1"], "--limit -1"),
        (["runs", "train", "--sort", "metrics.nope"], "no run has the key 'metrics.nope'"),
        (["plot", "train", "--x", "lr", "--y", "model.type", "-o", "x.png"], "must be numeric"),
        (["plot", "train", "-o", "x.png"], "say what to plot"),
        (["plot", "train", "--history", "los", "-o", "x.png"], "Nearest metrics: loss"),
        (["plot", "train", "--history", "model.type", "-o", "x.png"], "is not a metric"),
        (
            ["plot", "train", "--history", "loss", "--filter", "lr=99", "-o", "x.png"],
            "on an empty RunCollection",
        ),
    ],
)
def test_errors_are_one_line_and_exit_1(
    sqlite_store: StoreData, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv, "--tracking-uri", sqlite_store.uri)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err and err.startswith("hydraflow: error:")


def test_console_script_missing_store(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("hydraflow")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hydraflow.cli"]
    result = subprocess.run(
        [*command, "runs", "train", "--tracking-uri", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
