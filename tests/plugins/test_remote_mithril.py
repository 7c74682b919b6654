"""Sweeps on the mithril provider against the fake Mithril and a loopback sshd.

The code is uploaded to the fake's remote root (under tmp_path, not the launch dir); every job logs
into its own store there, comes home into the sweep dir, and its run is imported into the user's
store. Jobs run on warm workers (``reuse_workers``, the default: one spot bid per worker) unless a
test sets ``reuse_workers=false`` (one bid per job).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from launcher_helpers import job_runs
from mlflow_server import TrackingServer
from remote_helpers import EXPERIMENT, copy_project, files_containing, run_sweep
from sshd import SSHServer

from flow_backend.testing import FakeMithril
from flow_backend.testing.pytest_plugin import fake_mithril

__all__ = ["fake_mithril"]


@pytest.fixture
def cloud(fake_mithril: FakeMithril, sshd: SSHServer) -> FakeMithril:
    """The fake Mithril with its instances on the loopback sshd (and the env pointing at both)."""
    return fake_mithril


def test_four_job_sweep_on_mithril_lands_in_the_users_store(
    cloud: FakeMithril, tmp_path: Path
) -> None:
    project = copy_project(tmp_path)
    remote_root = Path(os.environ["FLOW_MITHRIL_REMOTE_ROOT"])
    proc = run_sweep(
        project, "mithril", "lr=0.1,0.01,0.001,0.0001", "hydra.launcher.max_parallel=2"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # two warm workers ran the four jobs: one spot bid each, not one per job
    bids = cloud.bids()
    assert len(bids) == 2, [bid["name"] for bid in bids]

    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    parents = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert len(parents) == 1 and len(children) == 4
    assert sorted(r.data.params["lr"] for r in children) == ["0.0001", "0.001", "0.01", "0.1"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["flow.provider"] == "mithril"
        assert run.data.tags["flow.task_id"] in {bid["fid"] for bid in bids}
        assert run.data.tags["flow.instance_type"] == "a100"  # the worker's order said so
        price = float(run.data.tags["flow.cost_per_hour"])
        assert 0 <= float(run.data.tags["flow.total_cost"]) < price  # a job of seconds
        assert run.data.metrics["score"] > 0
        returned = json.loads(run.data.tags["hydraflow.return_value"])
        # the job ran in the uploaded code under the remote root, not in the launch dir
        assert Path(returned["cwd"]).is_relative_to(remote_root)
        assert not Path(returned["cwd"]).is_relative_to(project)
        assert returned["original_cwd"] == returned["cwd"]  # get_original_cwd(): the code there
        # tags naming the job's folder point at its folder in the sweep dir here
        assert Path(run.data.tags["hydraflow.sweep_dir"]).is_relative_to(project)
    parent = parents[0]
    assert parent.info.status == "FINISHED"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "score")] == [0, 1, 2]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert ".hydra" in artifacts

    sweep_dir = project / "multirun" / "sweep"
    for num in range(4):
        job_dir = sweep_dir / str(num)
        assert (job_dir / ".hydra" / "config.yaml").is_file()
        assert (job_dir / "model.txt").read_text().startswith("lr=")
        assert (job_dir / "mlflow.db").is_file()  # the job's own store came home too
        assert (job_dir / "flow-task.log").is_file()
    # importing is idempotent: importing a job folder that came home again adds no second run
    from hydraflow.run_import import import_runs, store_uri_for

    import_runs(store_uri_for(sweep_dir / "0"), os.environ["MLFLOW_TRACKING_URI"])
    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    assert len([r for r in runs if r.data.tags.get("hydraflow.role") == "job"]) == 4
    assert not (project / ".hydraflow").exists()  # staged specs removed after the sweep

    # the API key is nowhere: sweep dir, job stores, the user's store, the remote side, the logs
    key = cloud.api_key
    assert key not in proc.stdout + proc.stderr
    assert files_containing(project, key) == []
    assert files_containing(remote_root, key) == []
    assert files_containing(tmp_path / "flow-home", key) == []
    assert key not in (tmp_path / "mlflow.db").read_bytes().decode(errors="replace")
    assert cloud.billing_instances() == []


def test_a_job_that_raises_or_crashes_its_worker_on_mithril_fails_alone(
    cloud: FakeMithril, tmp_path: Path
) -> None:
    """One worker runs the jobs in turn: a raising job comes home FAILED with its error and the
    worker goes on; a job that kills the worker fails with its log tail, and a new worker (a new
    bid) runs the last job."""
    project = copy_project(tmp_path)
    proc = run_sweep(project, "mithril", "lr=0.1,-1,0,0.2", "hydra.launcher.max_parallel=1")
    assert proc.returncode == 1
    assert "ValueError: lr must be positive, got -1" in proc.stderr
    # the traceback names the uploaded copy of the user's script and shows the failing line
    assert 'remote_app.py", line' in proc.stderr
    assert 'raise ValueError(f"lr must be positive, got {cfg.lr}")' in proc.stderr
    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    by_lr = {r.data.params["lr"]: r for r in runs if r.data.tags.get("hydraflow.role") == "job"}
    assert by_lr["0.1"].info.status == "FINISHED"
    assert by_lr["-1"].info.status == "FAILED"
    assert "lr must be positive" in by_lr["-1"].data.tags["hydraflow.error"]
    assert (project / "multirun" / "sweep" / "1" / "mlflow.db").is_file()
    assert by_lr["0.2"].info.status == "FINISHED"  # after the crash, on a new worker
    assert "0" not in by_lr  # the crashed job's run never came home: no half-run in the store
    assert "job #2 (lr=0) FAILED: TaskEndedWithoutResult" in proc.stdout + proc.stderr
    crashed = project / "multirun" / "sweep" / "2" / "flow-task.log"  # its output, as it died
    assert "about to take the whole process down" in crashed.read_text()
    names = sorted(bid["name"] for bid in cloud.bids())
    assert [name.rsplit("-", 1)[1] for name in names] == ["w0", "w1"]  # the crash cost one bid
    assert cloud.billing_instances() == []


def test_ignore_files_that_would_drop_the_job_specs_stop_the_sweep_clearly(
    cloud: FakeMithril, tmp_path: Path
) -> None:
    project = copy_project(tmp_path)
    (project / ".flowignore").write_text(".hydraflow/\n")
    # one task per job: its spec travels in the code upload (a worker's order carries its spec)
    proc = run_sweep(project, "mithril", "lr=0.1", "hydra.launcher.reuse_workers=false")
    assert proc.returncode == 1
    assert "would not be uploaded" in proc.stderr and "!.hydraflow/" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cloud.bids() == []  # nothing was launched
    assert not (project / ".hydraflow").exists()


def test_a_mithril_sweep_lands_on_a_tracking_server(
    cloud: FakeMithril,
    tmp_path: Path,
    tracking_server: TrackingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = tracking_server.uri
    project = copy_project(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # one spot bid per job (the other strategy's path home, onto a server)
    proc = run_sweep(project, "mithril", "lr=0.1,0.01", "hydra.launcher.reuse_workers=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(cloud.bids()) == 2
    runs = job_runs(uri, EXPERIMENT)  # the session's server: only this test sweeps into it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (parent,) = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert sorted(r.data.params["lr"] for r in children) == ["0.01", "0.1"]
    bids = {bid["fid"] for bid in cloud.bids()}
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        # the job runner was handed its task on its command line: the tags name it
        assert run.data.tags["flow.task_id"] in bids
        assert run.data.tags["flow.provider"] == "mithril"
        assert run.data.tags["flow.instance_type"] == "a100"
        assert float(run.data.tags["flow.cost_per_hour"]) > 0
        assert len(client.get_metric_history(run.info.run_id, "score")) == 3
        assert ".hydra" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert parent.info.status == "FINISHED"
    assert cloud.api_key not in (tracking_server.root / "server.db").read_bytes().decode(
        errors="replace"
    )
