"""A job that starts again (a launcher retry, a requeued SLURM job) keeps one MLflow run per job.

Runs are written into a real sqlite store the way the callback writes them; the end-to-end case is
``test_a_requeued_array_element_runs_again_and_mlflow_shows_one_run_per_job`` (a real SLURM).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from hydraflow._mlflow_store import replace_earlier_job_runs
from hydraflow.callbacks import _starts_again
from hydraflow.conventions import ENV_TASK_RESTARTS
from hydraflow.sweep_context import TaskAttempt


def test_the_run_an_earlier_start_left_running_is_replaced(
    tmp_path: Path, migrated_store: Path
) -> None:
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("app")

    def job_run(sweep: str, num: int) -> str:
        tags = {"hydraflow.sweep_id": sweep, "hydraflow.role": "job", "hydraflow.job_num": str(num)}
        run = client.create_run(experiment, tags=tags)
        client.log_metric(run.info.run_id, "loss", 0.5, step=0)
        return run.info.run_id

    stale, other_job, other_sweep = job_run("cafe01", 0), job_run("cafe01", 1), job_run("beef02", 0)
    ended = job_run("cafe01", 0)
    client.set_terminated(ended, "FAILED")  # an ended run of the job is its own record: kept

    assert replace_earlier_job_runs(client, experiment, "cafe01", 0) == 1
    gone = client.get_run(stale)
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED"
    assert "later start of the same job" in gone.data.tags["hydraflow.end_reason"]
    shown = client.search_runs([experiment], run_view_type=ViewType.ACTIVE_ONLY)
    assert sorted(r.info.run_id for r in shown) == sorted([other_job, other_sweep, ended])
    assert {r.info.status for r in shown} == {"RUNNING", "FAILED"}  # the others untouched


def test_a_job_starts_again_on_a_retry_or_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    first = TaskAttempt("hf-cafe01-0", "slurm", "cpu", "0", attempt=0)
    retry = TaskAttempt("hf-cafe01-0-r1", "slurm", "cpu", "0", attempt=1)
    monkeypatch.delenv(ENV_TASK_RESTARTS, raising=False)
    assert not _starts_again(None)  # a first start (or no flow launcher) looks nothing up
    assert not _starts_again(first)
    monkeypatch.setenv(ENV_TASK_RESTARTS, "0")
    assert not _starts_again(first)
    assert _starts_again(retry)  # the launcher's retry of a job whose task died
    monkeypatch.setenv("HYDRAFLOW_JOB_ATTEMPT", "1")  # the former env var means nothing now
    assert not _starts_again(first)
    monkeypatch.setenv(ENV_TASK_RESTARTS, "2")  # SLURM requeued the task twice
    assert _starts_again(first)
    assert _starts_again(None)


def test_the_attempt_reaches_the_jobs_copy_of_the_callback_and_its_tags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job runner hands the callback its task (``--attempt`` / the order's ``attempt``) in the
    job's copy of Hydra's context; the copy it was made from, and the environment, are untouched."""
    from types import SimpleNamespace

    from hydra.types import HydraContext

    from hydraflow.callbacks import MLflowCallback, _flow_task_tags
    from hydraflow.sweep_context import with_attempt

    monkeypatch.delenv("FLOW_TASK_ID", raising=False)  # a provider's task id would win
    retry = TaskAttempt("hf-cafe01-3-r1", "mithril", "a100", "2.5", attempt=1)
    assert TaskAttempt.from_json(retry.to_json()) == retry
    callback = MLflowCallback()
    callbacks: Any = SimpleNamespace(callbacks=[callback])  # what the job's spec unpickles
    context = HydraContext(config_loader=cast(Any, None), callbacks=callbacks)
    (copied,) = with_attempt(context, retry).callbacks.callbacks
    assert copied is not callback and callback.attempt is None
    assert copied.attempt == retry
    assert _flow_task_tags(copied.attempt) == {
        "flow.task_id": "hf-cafe01-3-r1",
        "flow.provider": "mithril",
        "flow.instance_type": "a100",
        "flow.cost_per_hour": "2.5",
    }
    assert _flow_task_tags(None) == {}  # Hydra's basic launcher, outside any Flow task
