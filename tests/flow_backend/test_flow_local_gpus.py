"""GPU hand-out on the local provider, with the GPU list given by FLOW_LOCAL_GPUS (no GPU here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flow_helpers import run_flow_cli, wait_for

from flow_backend import Flow, TaskStatus
from flow_backend.errors import InsufficientQuotaError


@pytest.fixture
def two_gpus(flow_home: Path, monkeypatch: pytest.MonkeyPatch) -> Flow:
    monkeypatch.setenv("FLOW_LOCAL_GPUS", "0,1")
    return Flow()


def _cuda(task_logs: str) -> str:
    return task_logs.strip().splitlines()[-1]


def test_each_task_gets_its_own_gpus_and_waits_while_they_are_busy(
    two_gpus: Flow, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    hold = f"echo $CUDA_VISIBLE_DEVICES; while [ ! -e {release} ]; do sleep 0.05; done"
    first = two_gpus.run(hold, instance_type="a100")
    second = two_gpus.run(hold, instance_type="a100")
    third = two_gpus.run("echo $CUDA_VISIBLE_DEVICES", instance_type="a100")
    try:
        assert (first.status, second.status) == (TaskStatus.RUNNING, TaskStatus.RUNNING)
        assert third.status is TaskStatus.PENDING
        assert third.message is not None and "waiting for free GPUs" in third.message
        wait_for(lambda: first.logs().strip() != "" and second.logs().strip() != "", what="GPU ids")
        assert sorted([_cuda(first.logs()), _cuda(second.logs())]) == ["0", "1"]
        assert third.refresh().status is TaskStatus.PENDING
        release.touch()
        assert first.wait(timeout=20) is TaskStatus.COMPLETED
        assert second.wait(timeout=20) is TaskStatus.COMPLETED
        assert third.wait(timeout=20) is TaskStatus.COMPLETED
        assert _cuda(third.logs()) in ("0", "1")
    finally:
        release.touch()
        for task in (first, second, third):
            if not task.refresh().is_terminal:
                task.stop()


@pytest.mark.timeout(60)
def test_gpus_of_a_task_that_ended_unobserved_go_to_the_next_one(two_gpus: Flow) -> None:
    """Nobody refreshed the first task after it exited: the next submit finds it ended and
    takes its GPUs (this used to deadlock on the allocation lock)."""
    first = two_gpus.run("true", instance_type="2xa100")
    marker = Path(two_gpus.provider.settings.home) / "tasks" / f"{first.task_id}.jsonl"
    wait_for(lambda: "exit" in marker.read_text(), what="the first task's exit")
    second = two_gpus.run("echo $CUDA_VISIBLE_DEVICES", instance_type="2xa100")
    assert second.status is TaskStatus.RUNNING
    assert second.wait(timeout=20) is TaskStatus.COMPLETED
    assert _cuda(second.logs()) == "0,1"
    assert first.refresh().status is TaskStatus.COMPLETED


def test_ranks_get_disjoint_gpus(two_gpus: Flow) -> None:
    task = two_gpus.run(
        "echo $FLOW_NODE_RANK=$CUDA_VISIBLE_DEVICES", instance_type="a100", num_instances=2
    )
    assert task.wait(timeout=20) is TaskStatus.COMPLETED
    assert sorted(task.logs().split()) == ["0=0", "1=1"]


def test_more_gpus_than_the_machine_has_is_refused(two_gpus: Flow) -> None:
    with pytest.raises(InsufficientQuotaError, match="needs 8 GPUs; this machine has 2"):
        two_gpus.run("true", instance_type="8xa100")


def test_cancelling_a_pending_task_ends_it_without_starting_it(
    two_gpus: Flow, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    holder = two_gpus.run(f"while [ ! -e {release} ]; do sleep 0.05; done", instance_type="2xa100")
    waiting = two_gpus.run("echo never", instance_type="a100")
    assert waiting.status is TaskStatus.PENDING
    assert waiting.stop() is TaskStatus.CANCELLED
    release.touch()
    assert holder.wait(timeout=20) is TaskStatus.COMPLETED
    assert waiting.refresh().status is TaskStatus.CANCELLED
    assert "never" not in waiting.logs() and "cancelled by user" in waiting.logs()


def test_pending_task_is_started_by_another_process(two_gpus: Flow, tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = two_gpus.run(f"while [ ! -e {release} ]; do sleep 0.05; done", instance_type="2xa100")
    waiting = two_gpus.run("echo got $CUDA_VISIBLE_DEVICES", instance_type="a100")
    assert waiting.status is TaskStatus.PENDING
    release.touch()
    assert holder.wait(timeout=20) is TaskStatus.COMPLETED
    # `flow status` in another process notices the free GPUs and starts the pending task
    status = run_flow_cli("status", waiting.task_id, "--json", check=True)
    assert '"status": "running"' in status.stdout or '"status": "completed"' in status.stdout
    assert waiting.wait(timeout=20) is TaskStatus.COMPLETED
    assert waiting.logs().strip() in ("got 0", "got 1")


SECRET = "sk-local-0123456789abcdef"


def _files_holding(folder: Path, text: str) -> list[Path]:
    return [
        path for path in folder.rglob("*") if path.is_file() and text in path.read_text("latin-1")
    ]


def test_a_waiting_task_keeps_its_secrets_off_disk_and_gets_them_when_it_starts(
    two_gpus: Flow, flow_home: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    holder = two_gpus.run(f"while [ ! -e {release} ]; do sleep 0.05; done", instance_type="2xa100")
    try:
        waiting = two_gpus.run(
            'echo "key=${#WANDB_API_KEY} plain=$PLAIN"',
            instance_type="a100",
            env={"WANDB_API_KEY": SECRET, "PLAIN": "visible"},
        )
        assert waiting.status is TaskStatus.PENDING
        config_file = flow_home / "tasks" / f"{waiting.task_id}.config.json"
        assert "visible" in config_file.read_text() and "WANDB_API_KEY" in config_file.read_text()
        assert _files_holding(flow_home, SECRET) == []
    finally:
        release.touch()
    assert holder.wait(timeout=20) is TaskStatus.COMPLETED
    # the submitting process holds the value in memory and starts the task with it
    assert waiting.wait(timeout=20) is TaskStatus.COMPLETED
    assert waiting.logs().strip() == f"key={len(SECRET)} plain=visible"
    assert _files_holding(flow_home, SECRET) == []


_SUBMIT_AND_EXIT = """
import sys
from flow_backend import Flow
task = Flow().run("echo started", instance_type="a100", env={"MY_TOKEN": sys.argv[1]})
print(task.task_id, task.status.value)
"""


def test_a_waiting_task_with_secrets_fails_when_its_submitter_is_gone(
    two_gpus: Flow, flow_home: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    holder = two_gpus.run(f"while [ ! -e {release} ]; do sleep 0.05; done", instance_type="2xa100")
    try:
        submitted = subprocess.run(
            [sys.executable, "-c", _SUBMIT_AND_EXIT, SECRET],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        task_id, status = submitted.stdout.split()
        assert status == "pending"
        assert _files_holding(flow_home, SECRET) == []
        orphan = two_gpus.get_task(task_id)
        assert orphan.status is TaskStatus.FAILED
        assert orphan.message is not None
        assert "MY_TOKEN" in orphan.message and "submit it again" in orphan.message
    finally:
        release.touch()
    assert holder.wait(timeout=20) is TaskStatus.COMPLETED
    assert two_gpus.get_task(task_id).status is TaskStatus.FAILED
    assert "started" not in two_gpus.get_task(task_id).logs()
