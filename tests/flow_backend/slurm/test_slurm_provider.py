"""The slurm provider against a real one-node SLURM cluster (``tests/slurm.py``)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import run_flow_cli, wait_for
from slurm import counting_commands

from flow_backend import Flow, TaskConfig
from flow_backend.errors import ProviderError, ValidationError
from flow_backend.models import TaskStatus
from flow_backend.providers.slurm import SlurmProvider
from flow_backend.providers.slurm.arrays import cluster_max_array_size
from flow_backend.providers.slurm.cluster import SlurmCluster


def _provider(flow: Flow) -> SlurmProvider:
    assert isinstance(flow.provider, SlurmProvider)
    return flow.provider


def _job_id(flow: Flow, task_id: str) -> str:
    return _provider(flow)._store.load(task_id).job_id


def _live_jobs(slurm: SlurmCluster) -> list[str]:
    result = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%T"], env=slurm.env, capture_output=True, text=True
    )
    return result.stdout.split()


def test_tasks_run_as_jobs_with_env_status_exit_code_and_logs(
    slurm_flow: Flow, tmp_path: Path
) -> None:
    script = (
        'echo "hello from $FLOW_TASK_ID"; '
        'echo "rank=$FLOW_NODE_RANK nodes=$FLOW_NUM_NODES main=$FLOW_MAIN_IP"; '
        'echo "plain=$PLAIN_VALUE job=$SLURM_JOB_ID"; pwd'
    )
    ok = slurm_flow.run(script, env={"PLAIN_VALUE": "p1"}, working_dir=str(tmp_path))
    bad = slurm_flow.run("echo about to fail; exit 3", working_dir=str(tmp_path))
    assert ok.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
    provider = _provider(slurm_flow)
    before = provider.login.calls["squeue"]
    slurm_flow.refresh_all([ok, bad])
    assert provider.login.calls["squeue"] == before + 1  # one call for both tasks

    assert ok.wait(timeout=60) is TaskStatus.COMPLETED
    assert bad.wait(timeout=60) is TaskStatus.FAILED
    assert ok.exit_code == 0
    log = ok.logs()
    assert f"hello from {ok.task_id}" in log
    assert "rank=0 nodes=1 main=127.0.0.1" in log
    assert f"plain=p1 job={_job_id(slurm_flow, ok.task_id)}" in log
    assert str(tmp_path) in log
    assert bad.exit_code == 3
    assert "exited with code 3" in (bad.message or "")
    assert "about to fail" in bad.logs(tail=5)
    assert ok.record.started_at is not None and ok.record.ended_at is not None
    assert ok.total_cost == "$0.00"
    # another process sees the same ended tasks
    status = run_flow_cli("--provider", "slurm", "status", bad.task_id, check=True)
    assert "failed" in status.stdout


def test_secret_env_reaches_the_job_but_no_file_or_command_line(
    slurm_flow: Flow, slurm: SlurmCluster, tmp_path: Path
) -> None:
    secret = "s3cret-" + secrets.token_hex(6)  # not in this file (the code snapshot)
    out = tmp_path / "seen.txt"
    task = slurm_flow.run(
        f'echo "$MY_API_KEY" > {out}; sleep 3',
        env={"MY_API_KEY": secret},
        working_dir=str(tmp_path),
    )
    wait_for(lambda: out.exists() and out.read_text().strip() != "", 60, "the job to start")
    assert out.read_text().strip() == secret
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert secret not in ps
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    home = Path(os.environ["FLOW_HOME"])
    for path in home.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


def test_logs_follow_until_the_job_ends(slurm_flow: Flow) -> None:
    task = slurm_flow.run("for i in 1 2 3; do echo line$i; sleep 0.4; done")
    lines = [line.strip() for line in task.logs(follow=True)]
    assert lines[-3:] == ["line1", "line2", "line3"]
    assert task.refresh().status is TaskStatus.COMPLETED


def test_scancel_from_another_shell_fails_the_task_with_its_log_tail(
    slurm_flow: Flow, slurm: SlurmCluster
) -> None:
    task = slurm_flow.run("echo started; sleep 60")
    wait_for(lambda: "started" in task.logs(), 60, "the job to start")
    subprocess.run(["scancel", _job_id(slurm_flow, task.task_id)], env=slurm.env, check=True)
    assert task.wait(timeout=60) is TaskStatus.FAILED
    assert "CANCELLED" in (task.message or "")
    tail = task.logs(tail=10)
    assert "started" in tail and "CANCELLED" in tail  # slurmstepd's line about it


def test_cancel_ends_the_job_in_slurm(slurm_flow: Flow, slurm: SlurmCluster) -> None:
    task = slurm_flow.run("sleep 60")
    job = _job_id(slurm_flow, task.task_id)
    wait_for(lambda: task.refresh().status is TaskStatus.RUNNING, 60, "the job to run")
    assert task.stop() is TaskStatus.CANCELLED
    assert not [line for line in _live_jobs(slurm) if line.split("|")[0] == job]
    assert slurm_flow.get_task(task.task_id).status is TaskStatus.CANCELLED


def test_array_is_one_sbatch_with_a_parallel_limit(slurm_flow: Flow, tmp_path: Path) -> None:
    provider = _provider(slurm_flow)
    configs = [
        TaskConfig(command=f"echo element {i} $FLOW_TASK_ID", working_dir=str(tmp_path))
        for i in range(5)
    ]
    before = provider.login.calls["sbatch"]
    records = provider.submit_array(configs, max_parallel=2)
    assert provider.login.calls["sbatch"] == before + 1
    job_ids = {provider._store.load(r.task_id).job_id for r in records}
    assert len({job.split("_")[0] for job in job_ids}) == 1 and len(job_ids) == 5
    tasks = [slurm_flow.get_task(r.task_id) for r in records]
    for i, task in enumerate(tasks):
        assert task.wait(timeout=90) is TaskStatus.COMPLETED
        assert f"element {i} {task.task_id}" in task.logs()


@pytest.fixture
def small_arrays(slurm: SlurmCluster, flow_home: Path) -> Iterator[Flow]:
    """A slurm client whose arrays hold 2 tasks at most; live tasks are cancelled at the end."""
    client = Flow(
        provider="slurm", slurm_conf=slurm.conf, poll_interval=0.2, slurm_max_array_size=2
    )
    yield client
    live = [task.task_id for task in client.list_tasks(active_only=True)]
    if live:
        client.provider.cancel_many(live)
    client.close()


def _batch_script(provider: SlurmProvider, task_id: str) -> str:
    """The script sbatch got for the task (an array's is in the folder above its elements')."""
    folder = Path(provider._store.load(task_id).task_dir)
    return next(
        p for p in (folder / "batch.sh", folder.parent / "batch.sh") if p.is_file()
    ).read_text()


def test_more_tasks_than_an_array_may_hold_go_in_as_arrays_that_keep_max_parallel(
    slurm_flow: Flow, small_arrays: Flow, tmp_path: Path
) -> None:
    assert cluster_max_array_size(_provider(slurm_flow).login) == 1001  # SLURM's default, read
    provider = _provider(small_arrays)
    configs = [
        TaskConfig(command=f"echo element {i} $FLOW_TASK_ID", working_dir=str(tmp_path))
        for i in range(5)
    ]
    records = provider.submit_array(configs, max_parallel=2)
    assert provider.login.calls["sbatch"] == 3  # arrays of 2 and 2 tasks, then a job of 1
    first = _job_id(small_arrays, records[0].task_id).split("_")[0]
    scripts = [_batch_script(provider, r.task_id) for r in records]
    assert "#SBATCH --array=0-1%1\n" in scripts[0] and "#SBATCH --array=0-1%1\n" in scripts[2]
    assert f"#SBATCH --dependency=afterany:{first}\n" in scripts[4]  # waits in the first's lane
    tasks = [small_arrays.get_task(r.task_id) for r in records]
    for i, task in enumerate(tasks):
        assert task.wait(timeout=90) is TaskStatus.COMPLETED
        assert f"element {i} {task.task_id}" in task.logs()
    ended = [provider.get(r.task_id) for r in records]
    first_ends = [t.ended_at for t in ended[:2]]
    assert ended[4].started_at is not None and None not in first_ends
    assert ended[4].started_at >= max(t for t in first_ends if t is not None)


def test_an_array_refused_after_another_went_in_leaves_nothing_queued(
    slurm: SlurmCluster, small_arrays: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper = tmp_path / "bin" / "sbatch"
    wrapper.parent.mkdir()
    # the second sbatch is refused, as SLURM refuses one past a user's job limit
    wrapper.write_text(
        f"#!/bin/sh\nif [ -e {tmp_path}/one ]; then\n"
        "  echo 'sbatch: error: Batch job submission failed: Job violates accounting/QOS policy' >&2\n"
        f'  exit 1\nfi\ntouch {tmp_path}/one\nexec {shutil.which("sbatch")} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    configs = [TaskConfig(command="sleep 60", upload_code=False) for _ in range(4)]
    with pytest.raises(ValidationError, match="QOS policy"):
        _provider(small_arrays).submit_array(configs, max_parallel=4)
    assert (tmp_path / "one").exists()  # the first array went in ...
    ids = [t.task_id for t in small_arrays.list_tasks()]
    assert len(ids) == 2  # ... and was cancelled: SLURM ends both its tasks
    array = _job_id(small_arrays, ids[0]).split("_")[0]
    wait_for(
        lambda: all(t.status is TaskStatus.CANCELLED for t in small_arrays.list_tasks()),
        timeout=30,
        what="the first array's tasks to be cancelled",
    )
    assert not [job for job in _live_jobs(slurm) if job.split("_")[0] == array]


def test_num_instances_is_one_job_on_that_many_nodes(slurm_flow: Flow, slurm: SlurmCluster) -> None:
    task = slurm_flow.run(
        'echo "rank=$FLOW_NODE_RANK nodes=$FLOW_NUM_NODES main=$FLOW_MAIN_IP on=$SLURMD_NODENAME"',
        num_instances=2,
        upload_code=False,
    )
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    lines = sorted(line for line in task.logs().splitlines() if line.startswith("rank="))
    first, second = slurm.nodes
    assert lines == [
        f"rank=0 nodes=2 main=127.0.0.1 on={first}",
        f"rank=1 nodes=2 main=127.0.0.1 on={second}",
    ]
    # a failing rank fails the task at once and stops the others
    failing = slurm_flow.run(
        'if [ "$FLOW_NODE_RANK" = 1 ]; then exit 3; fi; sleep 60',
        num_instances=2,
        upload_code=False,
    )
    assert failing.wait(timeout=40) is TaskStatus.FAILED
    assert failing.exit_code == 3


def test_flow_cancel_sweep_ends_an_array_in_slurm_with_one_scancel(
    slurm_flow: Flow, slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = _provider(slurm_flow)
    configs = [
        TaskConfig(name=f"hf-sweep42-{i}", command="sleep 60", upload_code=False) for i in range(3)
    ]
    records = provider.submit_array(configs, max_parallel=1)  # 1 running, 2 pending
    monkeypatch.setenv("FLOW_SLURM_CONF", str(slurm.conf))
    calls = counting_commands(tmp_path / "bin", "scancel")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = run_flow_cli("--provider", "slurm", "cancel", "--sweep", "sweep42", check=True)
    for record in records:
        assert f"{record.task_id}: cancelled" in result.stdout
    job = _job_id(slurm_flow, records[0].task_id).split("_")[0]
    assert not [line for line in _live_jobs(slurm) if line.split("|")[0].startswith(f"{job}_")]
    assert calls.read_text().splitlines() == [f"scancel {job}_[0-2]"]  # the array at once


@pytest.mark.parametrize(
    ("settings", "config", "field", "words"),
    [
        ({"slurm_partition": "nosuch"}, {}, "slurm_partition", "nosuch"),
        (
            {"slurm_instance_types": {"cpu": "--cpus-per-task=1"}},
            {"instance_type": "a100"},
            "instance_type",
            "a100",
        ),
        ({}, {"volumes": [{"name": "data"}]}, "slurm_volumes_dir", "slurm_volumes_dir"),
    ],
)
def test_bad_input_gets_one_clear_error(
    slurm: SlurmCluster,
    flow_home: Path,
    settings: dict[str, Any],
    config: dict[str, object],
    field: str,
    words: str,
) -> None:
    flow = Flow(provider="slurm", slurm_conf=slurm.conf, **settings)
    with pytest.raises(ValidationError) as caught:
        flow.run("echo never", **config)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert flow.list_tasks() == []
    tasks_dir = flow_home / "slurm" / "tasks"
    assert not tasks_dir.exists() or list(tasks_dir.iterdir()) == []  # no folder left behind


def test_a_volume_is_a_folder_under_slurm_volumes_dir_that_outlives_the_task(
    slurm: SlurmCluster, flow_home: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-volumes"  # the cluster's shared filesystem (here: this machine)
    flow = Flow(provider="slurm", slurm_conf=slurm.conf, slurm_volumes_dir=shared)
    volume = {"name": "training-data", "mount_path": "/data"}
    writer = flow.run(
        'echo "written by $FLOW_TASK_ID" > "$FLOW_VOLUME_TRAINING_DATA/note.txt"',
        volumes=[volume],
        upload_code=False,
    )
    assert "not at /data" in (writer.message or "")  # no mounts on SLURM: the record says so
    assert writer.wait(timeout=60) is TaskStatus.COMPLETED, writer.logs()
    assert (shared / "training-data" / "note.txt").read_text() == f"written by {writer.task_id}\n"
    reader = flow.run(
        'cat "$FLOW_VOLUME_TRAINING_DATA/note.txt"', volumes=[volume], upload_code=False
    )
    assert reader.wait(timeout=60) is TaskStatus.COMPLETED
    assert f"written by {writer.task_id}" in reader.logs()
    flow.close()


def test_missing_sbatch_is_one_clear_error(
    slurm: SlurmCluster, flow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    flow = Flow(provider="slurm", slurm_conf=slurm.conf)
    with pytest.raises(ProviderError, match="'sbatch' is not installed"):
        flow.run("echo never")
    assert list((flow_home / "slurm" / "tasks").iterdir()) == []  # no folder left behind
    result = run_flow_cli("--provider", "slurm", "run", "echo never")
    assert result.returncode == 1
    assert "sbatch" in result.stderr and "Traceback" not in result.stderr
