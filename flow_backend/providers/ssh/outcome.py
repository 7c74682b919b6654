"""A task's status from its nodes' remote task folders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flow_backend.models import TaskStatus
from flow_backend.providers.ssh.state import SSHTaskState
from flow_backend.remote import RemoteStatus

__all__ = ["Outcome", "derive_outcome"]


@dataclass
class Outcome:
    """What the nodes say.

    Attributes:
        status: The task's status now.
        exit_code: Its exit code once ended (first failing rank's, else rank 0's).
        message: Why, when it failed.
        ranks_to_stop: Ranks still running that must be stopped (another rank failed).
    """

    status: TaskStatus
    exit_code: int | None = None
    message: str | None = None
    ranks_to_stop: list[int] = field(default_factory=list)


def derive_outcome(
    state: SSHTaskState, remote: Sequence[RemoteStatus], *, owner_alive: bool
) -> Outcome:
    """Combine the nodes' remote statuses (in rank order) into the task's status.

    Args:
        state: The stored task state (its nodes match ``remote``).
        remote: One remote status per node.
        owner_alive: Whether the submitting process may still be starting the nodes.

    Returns:
        The derived outcome.
    """
    previous = state.record.status
    nodes = state.nodes
    done = [status.is_done for status in remote]
    failing = [
        (node.rank, status)
        for node, status in zip(nodes, remote, strict=True)
        if status.state == "lost" or (status.state == "exited" and status.exit_code != 0)
    ]
    first_code = next((s.exit_code for s in remote if s.exit_code is not None), None)
    if state.cancel_requested or any(status.stopped for status in remote):
        if all(done):
            return Outcome(TaskStatus.CANCELLED, exit_code=first_code, message="cancelled")
        return Outcome(previous if previous.is_terminal else TaskStatus.RUNNING)
    missing = [
        node for node, status in zip(nodes, remote, strict=True) if status.state == "missing"
    ]
    if missing:
        if previous in (TaskStatus.PENDING, TaskStatus.PROVISIONING) and owner_alive:
            return Outcome(TaskStatus.PROVISIONING)
        node = missing[0]
        why = (
            "the submitting process ended before the task started"
            if previous in (TaskStatus.PENDING, TaskStatus.PROVISIONING)
            else f"its folder {node.task_dir} on {node.host} is gone"
        )
        return Outcome(TaskStatus.FAILED, message=f"rank {node.rank}: {why}")
    if failing:
        rank, status = failing[0]
        if status.state == "lost":
            message = f"rank {rank} ended without an exit code (killed, or its host rebooted)"
        else:
            message = f"rank {rank} exited with code {status.exit_code}"
        to_stop = [node.rank for node, d in zip(nodes, done, strict=True) if not d]
        return Outcome(
            TaskStatus.FAILED, exit_code=status.exit_code, message=message, ranks_to_stop=to_stop
        )
    if all(done):
        return Outcome(TaskStatus.COMPLETED, exit_code=0)
    if any(status.state == "running" for status in remote):
        return Outcome(TaskStatus.RUNNING)
    return Outcome(TaskStatus.PROVISIONING)
