"""A 4-job Hydra sweep on the ssh provider (loopback sshd), recorded in the user's MLflow store.

Nothing relies on paths shared with the "remote" host: the code (with the staged job specs) is
uploaded to the remote dir, each job logs into its own store there, and its folder and run come
home when it ends. The jobs run on warm workers (``reuse_workers``, the default) with
``max_parallel=3`` on two hosts that take one task each: the third worker never gets a host, so its
job moves to the first worker that is free and it is released unused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sshd import SSHServer

PROJECT = Path(__file__).resolve().parents[2] / "plugins" / "apps" / "remote_project"


def test_four_job_sweep_runs_over_ssh_and_lands_in_mlflow(sshd: SSHServer, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    remote = tmp_path / "remote"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLOW_", "MITHRIL_", "MLFLOW_", "HYDRAFLOW_"))
    }
    env.update(
        FLOW_CONFIG_PATH=str(tmp_path / "no-config.yaml"),
        FLOW_HOME=str(tmp_path / "home"),
        FLOW_SSH_HOSTS=f"{sshd.destination},{sshd.alias_destination}",
        FLOW_SSH_KEY_PATH=str(sshd.key_path),
        FLOW_SSH_REMOTE_DIR=str(remote),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "remote_app.py",
            "-m",
            "hydra/launcher=flow",
            "hydra/callbacks=mlflow",
            "hydra.launcher.provider=ssh",
            f"hydra.launcher.python={sys.executable}",  # the loopback host's python with hydra
            "hydra.launcher.poll_interval=0.2",
            "hydra.sweep.dir=multirun/sweep",
            "hydra.launcher.max_parallel=3",
            "lr=1e-3,1e-4,1e-2,1e-1",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Authentication (publickey) successful" not in proc.stdout + proc.stderr

    states = [
        json.loads(p.read_text()) for p in (tmp_path / "home" / "ssh" / "tasks").glob("*.json")
    ]
    # three worker tasks, released (cancelled) at the end: two ran the jobs, one never started
    assert sorted(s["record"]["status"] for s in states) == ["cancelled"] * 3
    hosts = [s["record"]["ssh_destination"] for s in states]
    assert sorted(hosts, key=str) == sorted(
        [sshd.destination, sshd.alias_destination, None], key=str
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (experiment,) = [e for e in client.search_experiments() if e.name == "remote_app"]
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert sorted(r.data.params["lr"] for r in jobs) == ["0.0001", "0.001", "0.01", "0.1"]
    for run in jobs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["flow.provider"] == "ssh"
        assert run.data.tags["flow.task_id"] in {s["record"]["task_id"] for s in states}
        assert run.data.tags["mlflow.runName"]  # a run of its own per job, on a shared worker
        assert len(client.get_metric_history(run.info.run_id, "score")) == 3
        ran_in = Path(json.loads(run.data.tags["hydraflow.return_value"])["cwd"])
        assert ran_in.is_relative_to(remote)  # the uploaded code, not the launch dir
    ran = {s["record"]["task_id"] for s in states if s["record"]["ssh_destination"]}
    assert {r.data.tags["flow.task_id"] for r in jobs} == ran  # both "hosts" took jobs
    for num in range(4):
        job_dir = project / "multirun" / "sweep" / str(num)
        assert (job_dir / "model.txt").is_file()
        assert (job_dir / ".hydra" / "overrides.yaml").is_file()
        assert (job_dir / "flow-task.log").is_file()  # the job's own output came home
