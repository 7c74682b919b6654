"""Task status from a bid, its instances and (when started) its node over SSH.

=================================  =====================================================
bid / instances / node             task status
=================================  =====================================================
Open, Paused (never allocated)     pending
Allocated, instances booting       provisioning
Allocated, a node not started yet  provisioning
Allocated, nodes running           running
Allocated, every node exited       completed (all exit 0) / failed (the end comes from
                                   the recorded exit codes, never from "Terminated")
Allocated, any node failed         failed at once (the other ranks are stopped)
Preempting, Relocating             preempting
preempted: back to Open after an   failed, message starting "preempted" (the provider
allocation, more instance ids      then cancels the bid: its command would otherwise
than its quantity, an instance     start again on the new instance, billing twice for
STATUS_PREEMPTED, or Replaced      one job; the launcher retries the job instead)
Terminated otherwise               cancelled
any other (newer) status           provisioning, the status named in the message
=================================  =====================================================

Preemption therefore costs a retry and nothing more: the task fails ``preempted`` on the first
poll that sees it, its bid is cancelled (so the re-allocated instance stops billing at once), and
the launcher's retry places a new bid. Nothing waits for the preempted instance to come back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.mithril.api import Bid, Instance
from flow_backend.providers.mithril.nodes import DEFAULT_SSH_USER, NodeView, destination_of

__all__ = [
    "PREEMPTED_MESSAGE",
    "host_key_refused",
    "past_boot_limit",
    "record_of",
    "was_preempted",
]

PREEMPTED_MESSAGE = "preempted: Mithril took the spot instance back before the task ended"


def _ended_status(code: int) -> TaskStatus:
    return TaskStatus.COMPLETED if code == 0 else TaskStatus.FAILED


def outcome(nodes: list[NodeView]) -> tuple[int, str | None] | None:
    """``(exit code, message)`` once every rank has ended or any rank failed, else None.

    As with the ssh and SLURM providers, a task ends when **all** its ranks have ended: a rank that
    starts late (its sshd answered later, its script saw its environment later) still runs when rank
    0 is done, instead of being killed by the end of the bid. A failing rank ends the whole task at
    once (its bid is cancelled, which stops the other ranks). A rank that never starts keeps the
    task ``provisioning``, which ``mithril_boot_timeout`` bounds.
    """
    statuses = [n.status for n in nodes]
    failing = [
        (n.rank, n.status)
        for n in nodes
        if n.status is not None
        and (n.status.state == "lost" or n.status.exit_code not in (None, 0))
    ]
    ended = bool(nodes) and all(
        s is not None and s.is_done and s.state != "missing" for s in statuses
    )
    if not failing:
        return (0, None) if ended else None
    rank, status = failing[0]
    lost = status.state == "lost"
    code = 137 if lost else (status.exit_code or 1)
    why = (
        f"rank {rank}'s process vanished without an exit code"
        if lost
        else f"rank {rank} failed with exit code {code}"
    )
    if not ended:
        return code, f"{why}; the other ranks were stopped"
    if not lost and code in _EXPLAINED:
        return code, _EXPLAINED[code]
    return code, why if lost or len(nodes) > 1 else None


_EXPLAINED = {
    125: "exit code 125: the command never started (a volume could not be mounted, or the node "
    "never received its environment; see the log)",
    124: "exit code 124: the time limit (max_run_time_hours) stopped it, or it timed out",
    126: "exit code 126: the command could not run (no working docker/podman for `image`, or not "
    "executable; see the log)",
}


def was_preempted(bid: Bid, instances: list[Instance]) -> bool:
    """Mithril took the bid's capacity back at least once (see the module's table)."""
    if bid.status == "Replaced":
        return True
    if bid.status == "Open" and bid.instances:  # allocated before: back to Open
        return True
    if len(bid.instances) > bid.instance_quantity:  # allocated again on new instances
        return True
    return any(i.status == "STATUS_PREEMPTED" for i in instances)


def record_of(
    bid: Bid,
    instances: list[Instance],
    instance_type: str,
    nodes: list[NodeView] | None,
    *,
    feeding: bool = False,
    ssh_user: str = DEFAULT_SSH_USER,
) -> TaskRecord:
    """The task record for this poll (ended tasks get ``exit_code`` and ``ended_at``).

    Args:
        bid: The task's bid.
        instances: Its instances, rank 0 first.
        instance_type: The catalog name to report.
        nodes: The nodes as read over SSH this poll (None: not looked at).
        feeding: This process hands the nodes their environment, so "running" needs SSH to
            confirm the command started; other processes trust the API (instances running).
    """
    price = bid.limit_price * bid.instance_quantity
    started = min((i.created_at for i in instances), default=None)
    record = TaskRecord(
        task_id=bid.fid,
        name=bid.name,
        provider="mithril",
        instance_type=instance_type,
        num_instances=bid.instance_quantity,
        region=bid.region,
        cost_per_hour=price,
        created_at=bid.created_at,
        started_at=started,
        ssh_destination=destination_of(instances[0], ssh_user) if instances else None,
    )
    if was_preempted(bid, instances):
        record.status = TaskStatus.FAILED
        record.message = PREEMPTED_MESSAGE
        record.ended_at = bid.deactivated_at or datetime.now(UTC)
    elif bid.status in ("Open", "Paused"):
        record.status = TaskStatus.PENDING
        record.message = (
            "bid paused"
            if bid.status == "Paused"
            else f"waiting for spot capacity at ≤ ${bid.limit_price:.2f}/h"
        )
    elif bid.status in ("Preempting", "Relocating"):
        record.status = TaskStatus.PREEMPTING
        record.message = "Mithril is taking the spot instance back"
    elif bid.status == "Terminated":
        record.status = TaskStatus.CANCELLED
        record.message = "bid cancelled"
        record.ended_at = bid.deactivated_at or datetime.now(UTC)
    elif bid.status != "Allocated":  # a status newer than this client: keep polling
        record.status = TaskStatus.PROVISIONING
        record.message = f"Mithril reports bid status {bid.status!r}"
    else:
        booted = len(instances) == bid.instance_quantity and all(
            i.status == "STATUS_RUNNING" for i in instances
        )
        if nodes and all(n.status is not None for n in nodes):
            running = all(n.status and n.status.state != "starting" for n in nodes)
        else:
            running = not feeding
        ended = outcome(nodes or [])
        if ended is not None:
            record.exit_code, record.message = ended
            record.status = _ended_status(record.exit_code)
            record.ended_at = datetime.now(UTC)
        elif booted and running:
            record.status = TaskStatus.RUNNING
        else:
            record.status = TaskStatus.PROVISIONING
            if booted and not all(i.ssh_destination for i in instances):
                record.message = "waiting for the instance's SSH address (ssh_destination)"
    return record


def past_boot_limit(record: TaskRecord, instances: list[Instance], limit: float) -> None:
    """End (``failed``) a task still provisioning ``limit`` seconds after its allocation: its
    instance never started the command (sshd never answered, the node never got ready)."""
    if record.status != TaskStatus.PROVISIONING or not instances:
        return
    waited = (datetime.now(UTC) - min(i.created_at for i in instances)).total_seconds()
    if waited <= limit:
        return
    record.status = TaskStatus.FAILED
    record.ended_at = datetime.now(UTC)
    record.message = (
        f"the instance did not start the command within {limit:g} s of its allocation "
        f"(mithril_boot_timeout; last: {record.message or 'booting'}); its bid was cancelled"
    )


def host_key_refused(record: TaskRecord, reason: str) -> None:
    """End (``failed``) a live task one of whose instances answered with another host key than
    the one first trusted for it: nothing more is sent there (no environment, no code), and
    waiting would not help; its bid is cancelled."""
    if record.status.is_terminal:
        return
    record.status = TaskStatus.FAILED
    record.ended_at = datetime.now(UTC)
    record.message = f"refused the instance over SSH: {reason.rstrip('.')}; its bid was cancelled"
