"""A 4-job Hydra sweep of the demo app on the ssh provider (loopback sshd), recorded in MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sshd import SSHServer

TRAIN = Path(__file__).resolve().parents[3] / "examples" / "train.py"


def test_four_job_sweep_runs_over_ssh_and_lands_in_mlflow(sshd: SSHServer, tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLOW_", "MITHRIL_", "MLFLOW_"))
    }
    env.update(
        FLOW_CONFIG_PATH=str(tmp_path / "no-config.yaml"),
        FLOW_HOME=str(tmp_path / "home"),
        FLOW_SSH_HOSTS=f"{sshd.destination},{sshd.alias_destination}",
        FLOW_SSH_KEY_PATH=str(sshd.key_path),
        FLOW_SSH_REMOTE_DIR=str(tmp_path / "remote"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            "-m",
            "hydra/launcher=flow",
            "hydra.launcher.provider=ssh",
            "lr=1e-3,1e-4,1e-2,1e-1",
        ],
        cwd=tmp_path,
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
    assert sorted(s["record"]["status"] for s in states) == ["completed"] * 4
    hosts = {s["record"]["ssh_destination"] for s in states}
    assert hosts == {sshd.destination, sshd.alias_destination}  # both "hosts" took jobs

    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert sorted(r.data.params["lr"] for r in jobs) == ["0.0001", "0.001", "0.01", "0.1"]
    for run in jobs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["flow.provider"] == "ssh"
        assert run.data.tags["flow.task_id"] in {s["record"]["task_id"] for s in states}
        assert "final_accuracy" in run.data.metrics
