"""The flow sweeper's resume: a job whose config already has a FINISHED run is not launched again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hydra.test_utils.test_utils import TSweepRunner
from launcher_helpers import job_runs, started_tasks
from omegaconf import DictConfig


def _task(cfg: DictConfig) -> Any:
    return {"score": float(cfg.a) * 10, "label": f"a={cfg.a}"}


def _sweep(runner: TSweepRunner, tmp_path: Path, sweep: str, *extra: str) -> list[Any]:
    hydra_sweep = runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=_task,
        config_path="configs",
        config_name="compose.yaml",
        overrides=[
            "hydra/launcher=flow",
            "hydra/sweeper=flow",
            "hydra/callbacks=mlflow",
            f"+a={sweep}",
            *extra,
        ],
        temp_dir=tmp_path / "sweep",
    )
    with hydra_sweep:
        assert hydra_sweep.returns is not None
        return [ret.return_value for batch in hydra_sweep.returns for ret in batch]


def _tasks(tmp_path: Path) -> int:
    return len(started_tasks())


def _jobs(tmp_path: Path) -> list[Any]:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    return [r for r in job_runs(uri, "a_module") if r.data.tags.get("hydraflow.role") == "job"]


def test_resume_skips_finished_jobs_and_returns_their_recorded_results(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    first = _sweep(hydra_sweep_runner, tmp_path, "1,2")
    assert first == [{"score": 10.0, "label": "a=1"}, {"score": 20.0, "label": "a=2"}]
    assert _tasks(tmp_path) == 2
    capfd.readouterr()

    # A wider sweep in batches of 2: the first batch is identical to the first sweep, so it
    # launches nothing and returns what was recorded; only a=3 runs, numbered as in a full run.
    wider = _sweep(hydra_sweep_runner, tmp_path, "1,2,3", "hydra.sweeper.max_batch_size=2")
    assert wider == [*first, {"score": 30.0, "label": "a=3"}]
    assert _tasks(tmp_path) == 3
    err = capfd.readouterr().err
    assert "job #0 (+a=1) skipped: run " in err and "job #1 (+a=2) skipped: run " in err
    assert "job #2 (+a=3) skipped" not in err
    jobs = _jobs(tmp_path)
    assert len(jobs) == 3
    assert sorted(r.data.tags["hydraflow.job_num"] for r in jobs) == ["0", "1", "2"]

    # rerun_finished=true turns resume off.
    again = _sweep(hydra_sweep_runner, tmp_path, "1", "hydra.sweeper.rerun_finished=true")
    assert again == [{"score": 10.0, "label": "a=1"}]
    assert _tasks(tmp_path) == 4
    assert len(_jobs(tmp_path)) == 4
