"""A job process's quick exit flushes MLflow's asynchronous logging, and only that."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow

from hydra_plugins.hydraflow_plugins._job_runner import flush_mlflow_async_logging


def test_a_job_that_never_logged_leaves_no_store_in_its_folder(tmp_path: Path) -> None:
    # a process of its own: this one may run MLflow's logging threads for earlier tests
    module = flush_mlflow_async_logging.__module__
    job = f"import mlflow; from {module} import flush_mlflow_async_logging as flush; flush()"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    folder = tmp_path / "job"
    folder.mkdir()
    subprocess.run([sys.executable, "-c", job], cwd=folder, env=env, check=True, timeout=60)
    assert list(folder.iterdir()) == []  # MLflow's default store, sqlite:///mlflow.db, not made


def test_metrics_logged_asynchronously_are_in_the_store_after_the_flush(
    tmp_path: Path, migrated_store: Path
) -> None:
    store = tmp_path / "mlflow.db"
    shutil.copy(migrated_store, store)
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    with mlflow.start_run() as run:
        for step in range(50):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step, synchronous=False)
        flush_mlflow_async_logging()
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert len(history) == 50
