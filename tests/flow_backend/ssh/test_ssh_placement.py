"""Placement on hosts/GPUs and how node statuses combine (pure logic, no SSH)."""

from __future__ import annotations

import os
import socket

from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.ssh.outcome import derive_outcome
from flow_backend.providers.ssh.placement import choose_hosts, usage_of
from flow_backend.providers.ssh.state import NodePlacement, SSHTaskState
from flow_backend.remote import RemoteStatus

HOSTS = ["u@a:22", "u@b:22", "u@c:22"]


def test_cpu_tasks_take_the_first_idle_hosts() -> None:
    usage = usage_of([("u@a:22", [], True)])
    assert choose_hosts(HOSTS, {}, usage, num_nodes=1, gpus_per_node=0) == [("u@b:22", [])]
    assert choose_hosts(HOSTS, {}, usage, num_nodes=2, gpus_per_node=0) == [
        ("u@b:22", []),
        ("u@c:22", []),
    ]
    assert choose_hosts(HOSTS, {}, usage, num_nodes=3, gpus_per_node=0) is None


def test_gpu_tasks_get_free_indices_and_share_hosts_with_cpu_tasks() -> None:
    gpus = {"u@a:22": ["0", "1", "2", "3"], "u@b:22": ["0", "1"]}
    usage = usage_of([("u@a:22", ["0", "2"], False), ("u@a:22", [], True)])
    assert choose_hosts(HOSTS, gpus, usage, num_nodes=1, gpus_per_node=2) == [
        ("u@a:22", ["1", "3"])
    ]
    assert choose_hosts(HOSTS, gpus, usage, num_nodes=2, gpus_per_node=2) == [
        ("u@a:22", ["1", "3"]),
        ("u@b:22", ["0", "1"]),
    ]
    assert choose_hosts(HOSTS, gpus, usage, num_nodes=1, gpus_per_node=3) is None
    assert choose_hosts(HOSTS, gpus, {}, num_nodes=1, gpus_per_node=4) == [
        ("u@a:22", ["0", "1", "2", "3"])
    ]


def _state(ranks: int, status: TaskStatus = TaskStatus.RUNNING, **extra: object) -> SSHTaskState:
    record = TaskRecord(task_id="t", name="n", provider="ssh", instance_type="cpu", status=status)
    nodes = [
        NodePlacement(rank=r, host=HOSTS[r], task_dir=f"/r/{r}", workdir=f"/r/{r}")
        for r in range(ranks)
    ]
    return SSHTaskState(
        record=record,
        command="true",
        nodes=nodes,
        owner_pid=os.getpid(),
        owner_host=socket.gethostname(),
        **extra,  # type: ignore[arg-type]
    )


def test_all_ranks_zero_is_completed_any_nonzero_is_failed() -> None:
    ok = RemoteStatus("exited", 0, 10)
    assert derive_outcome(_state(2), [ok, ok], owner_alive=True).status is TaskStatus.COMPLETED
    outcome = derive_outcome(_state(2), [ok, RemoteStatus("exited", 4, 11)], owner_alive=True)
    assert (outcome.status, outcome.exit_code, outcome.message) == (
        TaskStatus.FAILED,
        4,
        "rank 1 exited with code 4",
    )


def test_a_failed_rank_stops_the_running_ones() -> None:
    outcome = derive_outcome(
        _state(3),
        [
            RemoteStatus("running", None, 1),
            RemoteStatus("exited", 1, 2),
            RemoteStatus("exited", 0, 3),
        ],
        owner_alive=True,
    )
    assert outcome.status is TaskStatus.FAILED and outcome.ranks_to_stop == [0]


def test_a_process_gone_without_exit_code_is_a_failure() -> None:
    outcome = derive_outcome(_state(1), [RemoteStatus("lost", None, 5)], owner_alive=True)
    assert outcome.status is TaskStatus.FAILED and "without an exit code" in (outcome.message or "")


def test_stopped_tasks_are_cancelled_once_every_rank_ended() -> None:
    stopped = RemoteStatus("exited", 143, 5, stopped=True)
    running = RemoteStatus("running", None, 6)
    assert derive_outcome(_state(1), [stopped], owner_alive=True).status is TaskStatus.CANCELLED
    assert derive_outcome(_state(2), [stopped, running], owner_alive=True).status is (
        TaskStatus.RUNNING
    )


def test_missing_folders_while_starting_depend_on_the_submitter() -> None:
    missing = RemoteStatus("missing")
    starting = _state(1, TaskStatus.PROVISIONING)
    assert derive_outcome(starting, [missing], owner_alive=True).status is TaskStatus.PROVISIONING
    gone = derive_outcome(starting, [missing], owner_alive=False)
    assert gone.status is TaskStatus.FAILED and "submitting process" in (gone.message or "")
    vanished = derive_outcome(_state(1), [missing], owner_alive=True)
    assert vanished.status is TaskStatus.FAILED and "is gone" in (vanished.message or "")
