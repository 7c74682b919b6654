"""examples/pipeline.py end to end in subprocesses: repeat runs, a config change, a Hydra sweep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import stage_runs

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pipeline.py"


@pytest.fixture(autouse=True)
def default_store(tmp_path: Path, migrated_store: Path) -> None:
    """The example's default store, ./mlflow.db, starts as an empty migrated one (each new store
    would cost a migration; creating one is the launcher tests' subject)."""
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")


def _run(cwd: Path, *overrides: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["FLOW_HOME"] = str(cwd / "flow-home")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _lines(out: str, word: str) -> list[str]:
    found = []
    for line in out.splitlines():
        if line.startswith("[pipeline]") and f": {word}" in line:
            found.append(line.split(":")[0].removeprefix("[pipeline] "))
    return found


@pytest.mark.timeout(600)
def test_example_second_run_skips_all_and_a_training_change_reruns_training_and_evaluation(
    tmp_path: Path,
) -> None:
    stages = ["data_preparation", "model_training", "model_evaluation"]

    first = _run(tmp_path)
    assert _lines(first, "running") == stages

    second = _run(tmp_path)
    assert _lines(second, "running") == []
    assert _lines(second, "skipped") == stages

    third = _run(tmp_path, "model_training.epochs=80")
    assert _lines(third, "skipped") == ["data_preparation"]
    assert _lines(third, "running") == ["model_training", "model_evaluation"]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the default store: ./mlflow.db
    assert [r.data.params["epochs"] for r in stage_runs(uri, stage="model_training")] == [
        "40",
        "80",
    ]
    assert len(stage_runs(uri, stage="data_preparation")) == 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],  # two job processes at once
        ["hydra/launcher=flow"],  # two local Flow tasks at once
    ],
    ids=["joblib", "flow"],
)
def test_concurrent_sweep_jobs_compute_the_shared_stage_once(
    tmp_path: Path, launcher: list[str]
) -> None:
    out = _run(tmp_path, "-m", *launcher, "model_training.lr=0.05,0.2")
    if "hydra/launcher=flow" in launcher:  # each job's output is in its folder's flow-task.log
        from flow_backend import Flow

        with Flow(provider="local", home=str(tmp_path / "flow-home")) as flow:
            assert len(flow.list_tasks()) == 2, out  # two tasks ran at once
        logs = sorted((tmp_path / "multirun").glob("*/*/*/flow-task.log"))
        assert len(logs) == 2, out
        out = "\n".join(log.read_text() for log in logs)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (data_run,) = stage_runs(uri, stage="data_preparation")  # computed by one job only
    assert data_run.info.status == "FINISHED"
    trainings = stage_runs(uri, stage="model_training")
    assert sorted(r.data.params["lr"] for r in trainings) == ["0.05", "0.2"]
    assert all(r.info.status == "FINISHED" for r in stage_runs(uri))
    assert _lines(out, "skipped") == ["data_preparation"]  # the other job reused it
    assert out.count("results:") == 2
