"""A sweep on the fake Mithril when the cloud misbehaves: preemption, a budget, Ctrl-C.

Jobs run on warm workers (the default) unless a test says otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from launcher_helpers import job_runs
from remote_helpers import EXPERIMENT, copy_project, sweep_command
from sshd import SSHServer

from flow_backend.testing import FakeMithril
from flow_backend.testing.pytest_plugin import fake_mithril

__all__ = ["fake_mithril"]

A100 = "a100-80gb.sxm.1x"


@pytest.fixture
def cloud(fake_mithril: FakeMithril, sshd: SSHServer) -> FakeMithril:
    return fake_mithril


def _start(project: Path, *overrides: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        sweep_command("mithril", *overrides),
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )


def _wait_for(
    predicate: object, proc: subprocess.Popen[str], what: str, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the sweep ended before {what}:\n{out[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _jobs_inside_task_function(count: int) -> bool:
    """``count`` attempts have created their own MLflow store on the remote side."""
    root = Path(os.environ["FLOW_MITHRIL_REMOTE_ROOT"])
    return len(list(root.glob(".code/*/.hydraflow/*/*/a*/out/*/mlflow.db"))) >= count


def _bid_status(cloud: FakeMithril, fid: str) -> str:
    (status,) = [bid["status"] for bid in cloud.bids() if bid["fid"] == fid]
    return str(status)


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return out


@pytest.mark.parametrize("workers", [True, False], ids=["workers", "per-task"])
def test_a_preempted_job_runs_again_on_a_new_bid_and_shows_one_run(
    cloud: FakeMithril, tmp_path: Path, workers: bool
) -> None:
    project = copy_project(tmp_path)
    mode = f"hydra.launcher.reuse_workers={str(workers).lower()}"
    gate = tmp_path / "gate"  # the first attempt holds until preempted; the retry goes through
    proc = _start(
        project, "lr=0.1", "sleep=120", f"gate={gate}", "hydra.launcher.max_retries=1", mode
    )
    _wait_for(lambda: _jobs_inside_task_function(1), proc, "the job started")
    (first,) = cloud.bids()
    cloud.preempt(first["fid"])
    _wait_for(lambda: _bid_status(cloud, first["fid"]) != "Preempting", proc, "the preemption")
    _wait_for(lambda: _jobs_inside_task_function(2), proc, "the retry started")
    gate.touch()
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert "retry 1/1" in out and "preempted" in out

    names = sorted(bid["name"] for bid in cloud.bids())
    assert len(names) == 2  # a new bid for the retry, the preempted one cancelled (below)
    if workers:  # a new worker took the job back from the queue
        assert names[0].endswith("-w0") and names[1] == names[0][:-1] + "1"
    else:
        assert names[1] == names[0] + "-r1"
    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert [r.info.status for r in children] == ["FINISHED"]  # one job, not two half-jobs
    assert children[0].data.params["lr"] == "0.1"
    assert (project / "multirun" / "sweep" / "0" / "model.txt").is_file()
    task_log = (project / "multirun" / "sweep" / "0" / "flow-task.log").read_text()
    assert "----- attempt 2 " in task_log  # both attempts' output, the retry marked
    assert cloud.billing_instances() == []


def test_max_total_cost_stops_a_retry_that_could_pass_it(
    cloud: FakeMithril, tmp_path: Path
) -> None:
    cloud.set_spot_price(A100, 3600.0)  # $1 a second: the preempted attempt has spent money
    project = copy_project(tmp_path)
    proc = _start(
        project,
        "lr=0.1",
        "sleep=3",
        "hydra.launcher.max_price_per_hour=4000",
        # the bid's limit price is spot x 1.25 capped at $4000/h: worst case $40 a job
        "hydra.launcher.max_run_time_hours=0.01",
        "hydra.launcher.max_total_cost=40",
        "hydra.launcher.max_retries=2",
    )
    _wait_for(lambda: _jobs_inside_task_function(1), proc, "the job started")
    (first,) = cloud.bids()
    cloud.preempt(first["fid"])
    out = _finish(proc)
    assert proc.returncode != 0  # the job could not finish
    assert "max_total_cost" in out and "not started" in out, out[-3000:]
    assert len(cloud.bids()) == 1  # no second bid was placed
    assert cloud.billing_instances() == []


def test_ctrl_c_cancels_every_bid_of_the_sweep(cloud: FakeMithril, tmp_path: Path) -> None:
    """Ctrl-C with two jobs running, one per instance type (``+flow.instance``): each ran on a
    worker (a bid) of its own type, and both bids are cancelled."""
    project = copy_project(tmp_path)
    proc = _start(project, "lr=0.1", "+flow.instance=a100,h100", "sleep=120")
    _wait_for(lambda: _jobs_inside_task_function(2), proc, "both jobs started")
    assert {bid["status"] for bid in cloud.bids()} == {"Allocated"}
    proc.send_signal(signal.SIGINT)
    out = _finish(proc)
    assert proc.returncode == 130, out[-3000:]
    assert "cancelled 2 live task(s)" in out
    bids = cloud.bids()
    assert len(bids) == 2
    type_names = {it.fid: it.name for it in cloud.state.instance_types}
    for instance in ("a100", "h100"):  # the job's progress lines name the bid that ran it
        lines = [ln for ln in out.splitlines() if f"lr=0.1 +flow.instance={instance} " in ln]
        (bid,) = [bid for bid in bids if any(bid["fid"] in line for line in lines)]
        assert type_names[bid["instance_type"]].startswith(f"{instance}-"), (lines, bid)
    assert all(bid["status"] not in ("Open", "Allocated", "Preempting") for bid in bids), bids
    assert cloud.billing_instances() == []
    assert not (project / ".hydraflow").exists()  # staged specs removed on the way out
