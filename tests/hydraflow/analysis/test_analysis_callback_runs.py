"""Runs recorded by the hydraflow MLflow callback (a real Hydra multirun of the demo app) read back
with their configs — and the README's analysis examples, run as written against that sweep."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hydraflow import RunCollection

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def _readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("<!-- section: analysis -->")[1].split("<!-- /section: analysis -->")[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The README's demo sweep, run in a fresh directory with the default store (./mlflow.db)."""
    if not (EXAMPLES / "train.py").exists():
        pytest.skip("examples/train.py is not in this checkout")
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    result = subprocess.run(
        [
            sys.executable,
            "examples/train.py",
            "-m",
            "lr=1e-3,1e-2",
            "model.type=mlp,cnn",
            "epochs=3",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return root, env


def test_sweep_runs_come_back_with_their_hydra_configs(demo: tuple[Path, dict[str, str]]) -> None:
    root, _ = demo
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = RunCollection.load("train", tracking_uri=uri)
    assert len(runs) == 4
    assert sorted(zip(runs["model.type"].to_list(), runs["lr"].to_list(), strict=True)) == [
        ("cnn", 0.001),
        ("cnn", 0.01),
        ("mlp", 0.001),
        ("mlp", 0.01),
    ]
    assert runs["model.hidden"].to_list() == ["[64, 64]"] * 4
    # The sweep's parent run is left out, and so are the columns only it has (its summary).
    assert "metrics.jobs" not in runs.to_frame().columns
    with_parent = RunCollection.load("train", tracking_uri=uri, include_sweep_runs=True)
    assert with_parent.filter({"tags.hydraflow.role": "sweep"}).one().metrics["jobs"] == 4
    sweep_ids = set(runs["tags.hydraflow.sweep_id"].to_list())
    assert len(sweep_ids) == 1
    assert len(RunCollection.load("train", tracking_uri=uri, sweep_id=sweep_ids.pop())) == 4
    for run in runs:
        assert run.cfg is not None
        assert run.cfg.lr == run.params["lr"] and run.cfg.model.type == run.params["model.type"]
        assert run.params["model.hidden"] == [64, 64]
        assert run.metric_history("loss")["step"].to_list() == [0, 1, 2]
    assert runs.best("metrics.loss").params["lr"] == 0.01
    assert runs.group_by("model.type").mean("metrics.accuracy")["model.type"].to_list() == [
        "cnn",
        "mlp",
    ]


def test_readme_examples_run_as_written(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    blocks = _readme_blocks("python")
    assert len(blocks) == 2
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, f"{block}\n{result.stderr[-2000:]}"
    assert (root / "loss.png").read_bytes()[:4] == b"\x89PNG"
    manual = RunCollection.load("manual", tracking_uri=str(root / "mlflow.db")).one()
    assert manual.params["batch_size"] == 64 and manual.info.status == "FINISHED"
    assert manual.tags["hydraflow.artifact.model.pt"] == "Model checkpoint"
    script = Path(sys.executable).with_name("hydraflow")
    for line in _readme_blocks("bash")[0].splitlines():
        command = shlex.split(line.split("#")[0])
        if not command:
            continue
        assert command[0] == "hydraflow"
        result = subprocess.run(
            [str(script), *command[1:]],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert (root / "loss.png").is_file()


def test_tracking_helpers_log_into_the_callbacks_job_runs(tmp_path: Path) -> None:
    app = Path(__file__).with_name("apps") / "track_app.py"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    result = subprocess.run(
        [sys.executable, str(app), "-m", "scale=1,2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = RunCollection.load("track_app", tracking_uri=uri).sort("scale")
    assert runs["scale"].to_list() == [1, 2]
    for run, scale in zip(runs, (1, 2), strict=True):
        history = run.metric_history("loss")
        assert history["step"].to_list() == [0, 1, 2]
        assert history["value"].to_list() == [3.0 * scale, 2.0 * scale, 1.0 * scale]
        assert run.metrics["acc"] == 0.5 * scale
        assert run.tags["note"] == f"scale={scale}"
        assert run.tags["hydraflow.artifact.weights.bin"] == "Trained weights"
        assert run.cfg is not None and run.cfg.scale == scale
