"""A 4-job Hydra sweep on the ssh provider (loopback sshd), recorded in the user's MLflow store.

Nothing relies on paths shared with the "remote" host: the code (with the staged job specs) is
uploaded to the remote dir, each job logs into its own store there, and its folder and run come
home when it ends. The jobs run on warm workers (``reuse_workers``, the default) with
``max_parallel=3`` on two hosts that take one task each: the third worker never gets a host, so its
job moves to the first worker that is free and it is released unused. A worker killed on its host
in the middle of a job, and a job past ``max_run_time_hours``, each fail alone (the first retried on a
new worker), and nothing is left running on the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from remote_helpers import copy_project, sweep_command
from sshd import SSHServer


def _ssh_env(sshd: SSHServer, tmp_path: Path) -> dict[str, str]:
    """The sweep's environment: the two loopback "hosts", the remote dir, the user's store."""
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
        FLOW_SSH_REMOTE_DIR=str(tmp_path / "remote"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    return env


def _task_states(tmp_path: Path) -> list[dict[str, Any]]:
    tasks = (tmp_path / "home" / "ssh" / "tasks").glob("*.json")
    return [json.loads(p.read_text()) for p in tasks]


def test_four_job_sweep_runs_over_ssh_and_lands_in_mlflow(sshd: SSHServer, tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    remote = tmp_path / "remote"
    env = _ssh_env(sshd, tmp_path)
    proc = subprocess.run(
        sweep_command("ssh", "hydra.launcher.max_parallel=3", "lr=1e-3,1e-4,1e-2,1e-1"),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Authentication (publickey) successful" not in proc.stdout + proc.stderr

    states = _task_states(tmp_path)
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


def _worker_running(remote: Path, job: int) -> int | None:
    """The pid of the worker process running ``job``'s first attempt, once it is in its task
    function (its ``model.txt`` is written): found by the order in its folder."""
    if not list(remote.glob(f"code/*/.hydraflow/*/{job}/a0/**/model.txt")):
        return None
    for order in remote.glob("code/*/.hydraflow/*/workers/*/job-*.json"):
        if f"/{job}/a0/" in json.loads(order.read_text())["result"]:
            folder = f"{order.parent.parent.name}/{order.parent.name}"
            for proc in Path("/proc").iterdir():
                try:
                    cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"_worker" in b" ".join(cmdline) and any(
                    arg.decode(errors="replace").endswith(folder) for arg in cmdline
                ):
                    return int(proc.name)
    return None


def _live_under(root: Path) -> list[str]:
    """Processes working under ``root`` (the loopback host is this machine)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            continue
        if state != "Z" and cwd.is_relative_to(root):
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()!r}")
    return found


def test_a_killed_worker_and_a_hanging_job_fail_alone_over_ssh(
    sshd: SSHServer, tmp_path: Path
) -> None:
    """Three jobs, two hosts: job 1's worker is killed on its host mid-job (the job fails with
    its log: ``max_retries=0``); job 0 runs past ``max_run_time_hours`` (it fails with its log,
    its worker is cancelled); a new worker on the freed host runs job 2. The sweep ends and
    nothing runs on the hosts."""
    project = copy_project(tmp_path)
    remote = tmp_path / "remote"
    gates = tmp_path / "never", tmp_path / "never-either", tmp_path / "open"
    gates[2].touch()  # jobs 0 and 1 wait (at most `sleep`), job 2 goes through
    proc = subprocess.Popen(
        sweep_command(
            "ssh",
            "hydra.launcher.max_parallel=2",
            # 14.4 s: job 0 hangs past it; job 1's worker is killed and w2 placed on the host it
            # freed (job 0's still busy) within a few seconds of job 0's start
            "hydra.launcher.max_run_time_hours=0.004",
            "sleep=600",
            f"gate={','.join(map(str, gates))}",
        ),
        cwd=project,
        env=_ssh_env(sshd, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while (pid := _worker_running(remote, 1)) is None:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "job 1 never started"
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)  # the worker (the job runs in its process) dies on its host
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 1, out[-3000:]
    assert f"job #0 (sleep=600 gate={gates[0]}) FAILED: TaskEndedWithoutResult" in out
    assert "exceeded max_run_time_hours=0.004" in out
    assert f"job #1 (sleep=600 gate={gates[1]}) FAILED: TaskEndedWithoutResult" in out
    assert "ended failed, exit code" in out  # the worker's task died (not stopped by us)
    assert f"job #2 (sleep=600 gate={gates[2]}) FAILED" not in out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "remote_app"]
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    # only job 2 came home; the others' runs stayed on the host with their workers
    assert [(r.data.tags["hydraflow.job_num"], r.info.status) for r in jobs] == [("2", "FINISHED")]
    sweep = project / "multirun" / "sweep"
    for num in (0, 1):  # the failed jobs' logs came home (from the host, or the worker's log)
        assert "job starts: lr=" in (sweep / str(num) / "flow-task.log").read_text()
    states = {s["record"]["name"].rsplit("-", 1)[1]: s["record"] for s in _task_states(tmp_path)}
    # w1 died (failed), w0 was cancelled past the time limit, w2 ran job 2 on the freed host
    assert sorted(states) == ["w0", "w1", "w2"]
    assert (states["w0"]["status"], states["w1"]["status"]) == ("cancelled", "failed")
    assert jobs[0].data.tags["flow.task_id"] == states["w2"]["task_id"]
    assert states["w2"]["ssh_destination"] == states["w1"]["ssh_destination"]
    limit = time.monotonic() + 10
    while _live_under(remote) and time.monotonic() < limit:
        time.sleep(0.1)
    assert _live_under(remote) == []
