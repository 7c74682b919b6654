"""``hydra/sweeper=flow_optuna`` end to end: the flow launcher (local provider) and the MLflow callback.

One search prunes, fails and completes trials for real; a rerun of the same study continues it.
Ctrl-C on a real sweep (an app in a subprocess) fails its running trials and keeps the study. The
scheduling itself (no barrier, slot reuse) is tested in memory in ``test_flow_optuna_search.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hydra.test_utils.test_utils import TSweepRunner
from launcher_helpers import APPS, interrupt, job_runs, processes_mentioning, wait_for
from omegaconf import DictConfig

from hydra_plugins.hydraflow_plugins._optuna_options import FlowOptunaError

STEPS = 10


def _train(cfg: DictConfig) -> float:
    """x=3 fails at once; x=9 is slow and logs a bad val_loss; the others are quick."""
    from hydraflow.tracking import log_metric

    x = int(cfg.x)
    if x == 3:
        raise RuntimeError("diverged")
    for step in range(STEPS):
        log_metric("val_loss", 50.0 if x == 9 else 1.0 / (step + 1), step=step)
        time.sleep(1.0 if x == 9 else 0.02)
    return float((x - 2) ** 2)


def _search(runner: TSweepRunner, tmp_path: Path, n_trials: int, *extra: str) -> Any:
    sweep = runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=_train,
        config_path="configs",
        config_name="compose.yaml",
        overrides=[
            "hydra/launcher=flow",
            "hydra.launcher.max_parallel=2",
            "hydra/sweeper=flow_optuna",
            "hydra/sweeper/sampler=random",
            "hydra.sweeper.sampler.seed=69",  # asks x = 2, 1, 9, 3, 1, 9, ...
            "hydra.sweeper.study_name=e2e",
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=2",
            "+x=choice(1,2,3,9)",
            *extra,
        ],
        temp_dir=tmp_path / "sweep",
    )
    with sweep:
        return sweep.returns


PRUNING = [
    "hydra/callbacks=mlflow",
    "hydra.sweeper.prune_on=val_loss",
    "hydra/sweeper/pruner=median",
    "hydra.sweeper.pruner.n_startup_trials=2",
]


def _trial_runs(experiment: str = "a_module") -> dict[int, Any]:
    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], experiment)
    return {
        int(r.data.tags["hydraflow.job_num"]): r
        for r in runs
        if r.data.tags.get("hydraflow.role") == "job"
    }


def test_a_search_prunes_fails_completes_and_resumes(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    results = _search(hydra_sweep_runner, tmp_path, 5, *PRUNING)
    assert results["best_value"] == 0.0 and results["best_params"] == {"+x": 2}

    runs = _trial_runs()
    assert sorted(runs) == [0, 1, 2, 3, 4]
    states = {num: run.data.tags["hydraflow.optuna.state"] for num, run in runs.items()}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED", 3: "FAIL", 4: "COMPLETE"}
    assert [runs[n].data.tags["hydraflow.optuna.trial"] for n in range(5)] == list("01234")
    pruned = runs[2]
    assert pruned.info.status == "KILLED"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    history = client.get_metric_history(pruned.info.run_id, "val_loss")
    assert 0 < len(history) < STEPS  # stopped before its last step
    assert runs[3].info.status == "FAILED" and "diverged" in runs[3].data.tags["hydraflow.error"]
    parent_id = runs[0].data.tags["mlflow.parentRunId"]
    assert all(run.data.tags["mlflow.parentRunId"] == parent_id for run in runs.values())
    parent = client.get_run(parent_id)
    assert parent.data.metrics["best_value"] == 0.0
    assert parent.data.params["best.x"] == "2"
    assert parent.data.tags["hydraflow.optuna.study"] == "e2e"
    assert processes_mentioning(str(tmp_path)) == []  # the pruned job's process was stopped

    # The same study again with one more trial: only job #5 runs, in a folder of its own.
    _search(hydra_sweep_runner, tmp_path, 6, *PRUNING)
    runs = _trial_runs()
    assert sorted(runs) == [0, 1, 2, 3, 4, 5]
    assert runs[5].data.tags["hydraflow.optuna.trial"] == "5"
    journal = tmp_path / "optuna" / "e2e.jsonl"
    trials = [json.loads(line) for line in journal.read_text().splitlines()][1:]
    assert sorted(t["number"] for t in trials) == [0, 1, 2, 3, 4, 5]
    assert sorted(t["user_attrs"]["job_num"] for t in trials) == [0, 1, 2, 3, 4, 5]


def _optuna_app(tmp_path: Path, n_trials: int, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(APPS / "slow_objective_app.py"),
            "-m",
            "hydra/launcher=flow",
            "hydra.launcher.max_parallel=2",
            "hydra/callbacks=mlflow",
            "hydra/sweeper=flow_optuna",
            "hydra/sweeper/sampler=random",
            "hydra.sweeper.study_name=ctrl-c",
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=2",
            "+x=range(0,5)",
            f"+seconds={seconds}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_ctrl_c_fails_the_running_trials_and_a_rerun_continues_the_study(tmp_path: Path) -> None:
    sweep = _optuna_app(tmp_path, 4, seconds=120)
    _out, err = interrupt(sweep, lambda: len(list(tmp_path.glob("started-*"))) >= 2, "2 trials")
    assert sweep.returncode != 0
    assert "[flow_optuna] stopped: the trials that were running are FAIL in study 'ctrl-c'" in err
    assert "hydra.sweeper.study_name=ctrl-c to continue it" in err
    assert "Traceback" not in err
    runs = _trial_runs("slow_objective_app")
    assert sorted(runs) == [0, 1]
    for run in runs.values():
        assert run.info.status in ("KILLED", "FAILED"), run.info.status
        assert run.data.tags["hydraflow.optuna.state"] == "FAIL"
        assert run.data.tags["hydraflow.optuna.interrupted"] == "true"
    journal = tmp_path / "optuna" / "ctrl-c.jsonl"
    trials = [json.loads(line) for line in journal.read_text().splitlines()][1:]
    assert sorted((t["state"], t["user_attrs"]["interrupted"]) for t in trials) == [
        ("FAIL", True),
        ("FAIL", True),
    ]
    wait_for(lambda: not processes_mentioning(str(tmp_path)), 15, "no process left")

    # The same command again: the two interrupted trials do not count, jobs #2 and #3 run them.
    rerun = _optuna_app(tmp_path, 2, seconds=0)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert "study 'ctrl-c' in" in out + err and "0 of 2 trials ended before" in out + err
    runs = _trial_runs("slow_objective_app")
    assert sorted(runs) == [0, 1, 2, 3]
    assert [runs[n].data.tags["hydraflow.optuna.state"] for n in (2, 3)] == ["COMPLETE"] * 2
    assert [runs[n].data.tags["hydraflow.optuna.trial"] for n in (2, 3)] == ["2", "3"]
    assert sorted(p.name for p in tmp_path.glob("multirun/*/*/[0-9]")) == ["0", "1", "2", "3"]


def test_prune_on_without_the_mlflow_callback_names_the_key(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    with pytest.raises(FlowOptunaError) as raised:
        _search(hydra_sweep_runner, tmp_path, 2, "hydra.sweeper.prune_on=val_loss")
    assert "hydra.sweeper.prune_on='val_loss' needs the MLflow callback" in str(raised.value)


def test_an_unknown_sampler_lists_the_known_ones(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    with pytest.raises(Exception) as raised:
        _search(hydra_sweep_runner, tmp_path, 2, "hydra/sweeper/sampler=nope")
    text = str(raised.value)
    assert "Could not find 'hydra/sweeper/sampler/nope'" in text
    assert "tpe" in text and "nsgaii" in text


def test_trial_records_on_the_runs_and_the_pareto_front_on_the_parent() -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    from hydra_plugins.hydraflow_plugins._optuna_core import results_of
    from hydra_plugins.hydraflow_plugins._optuna_mlflow import MlflowTrials

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    experiment = client.create_experiment("pareto")
    parent = client.create_run(experiment, tags={"hydraflow.role": "sweep"}).info.run_id
    children = [
        client.create_run(
            experiment,
            tags={
                "hydraflow.role": "job",
                "hydraflow.sweep_id": "s1",
                "hydraflow.job_num": str(num),
                "mlflow.parentRunId": parent,
            },
        ).info.run_id
        for num in range(4)
    ]
    client.log_metric(children[2], "loss", 0.5, step=0)
    client.log_metric(children[2], "loss", 0.25, step=1)
    records = MlflowTrials(uri, "pareto", "s1", parent, "study", metric="loss")
    assert records.read([0, 1, 2, 7]) == {2: {0: 0.5, 1: 0.25}}
    assert records.logged_metrics(2) == ["loss"]

    study = optuna.create_study(directions=["minimize", "minimize"])
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        "x": optuna.distributions.FloatDistribution(0, 3)
    }
    for num, values in enumerate([(0, 4), (4, 0), (1, 1), (5, 5)]):
        study.tell(study.ask(distributions), values)
        records.ended(num, study.trials[num])
    records.summary(study, results_of(study))

    front = json.loads(Path(client.download_artifacts(parent, "pareto_front.json")).read_text())
    assert sorted(s["values"] for s in front["solutions"]) == [[0, 4], [1, 1], [4, 0]]
    assert json.loads(client.get_run(parent).data.tags["hydraflow.optuna.pareto_front"]) == [
        0,
        1,
        2,
    ]
    child = client.get_run(children[1])
    assert child.data.tags["hydraflow.optuna.trial"] == "1"
    assert child.data.tags["hydraflow.optuna.state"] == "COMPLETE"
    assert child.data.tags["hydraflow.optuna.study"] == "study"
