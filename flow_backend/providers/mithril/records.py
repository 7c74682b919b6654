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
Allocated, an instance             failed, naming the instance and its status (its log
STATUS_STOPPING, _TERMINATED or    is brought home first): Mithril ended it while the
_ERROR (and no exit code yet)      bid still holds it
Allocated, an instance             preempting (the command keeps running: a relocated
STATUS_RELOCATING / _PREEMPTING    instance goes back to STATUS_RUNNING)
Allocated, another instance        provisioning (running once the command ran), the
status (STATUS_PAUSED, newer)      status named in the message
Preempting, Relocating             preempting
preempted: back to Open after an   failed, message starting "preempted" (the provider
allocation, more instance ids      then cancels the bid: its command would otherwise
than its quantity, an instance     start again on the new instance, billing twice for
STATUS_PREEMPTED / _REPLACED, or   one job; the launcher retries the job instead)
Replaced
Terminated otherwise               cancelled
any other (newer) status           provisioning, the status named in the message
=================================  =====================================================

While the bid is Allocated the instance status decides, as in the SDK (flow-compute 3.28.2:
``_status_with_precedence``, ``MITHRIL_STATUS_MAPPINGS``): relocating and preempting are
preempting, an error is failed. The SDK calls a stopping or terminated instance "cancelled"; here
nobody cancelled the task, so it failed. ``mithril_boot_timeout`` only ends a task whose
instances are still booting (STATUS_NEW ... STATUS_STARTING, or running without the command
started yet) and whose command never ran.

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
    "BOOTING_INSTANCE",
    "MOVING_INSTANCE",
    "PREEMPTED_MESSAGE",
    "STOPPED_INSTANCE",
    "brings_logs",
    "host_key_refused",
    "node_views",
    "past_boot_limit",
    "record_of",
    "stopped_instance",
    "was_preempted",
]

PREEMPTED_MESSAGE = "preempted: Mithril took the spot instance back before the task ended"

#: Instance statuses of a machine not up yet (``mithril_boot_timeout`` bounds them).
BOOTING_INSTANCE = frozenset(
    {"STATUS_NEW", "STATUS_CONFIRMED", "STATUS_INITIALIZING", "STATUS_STARTING"}
)
#: Instance statuses of a machine being moved or taken back: the task is preempting.
MOVING_INSTANCE = frozenset({"STATUS_RELOCATING", "STATUS_PREEMPTING"})
#: Instance statuses of a machine Mithril stopped: under an Allocated bid, the task failed.
STOPPED_INSTANCE = frozenset({"STATUS_STOPPING", "STATUS_TERMINATED", "STATUS_ERROR"})
_TAKEN_INSTANCE = frozenset({"STATUS_PREEMPTED", "STATUS_REPLACED"})


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
    return any(i.status in _TAKEN_INSTANCE for i in instances)


def stopped_instance(bid: Bid, instances: list[Instance]) -> Instance | None:
    """The first instance Mithril stopped (:data:`STOPPED_INSTANCE`) while ``bid`` is Allocated."""
    if bid.status != "Allocated":
        return None
    return next((i for i in instances if i.status in STOPPED_INSTANCE), None)


def brings_logs(record: TaskRecord, bid: Bid, instances: list[Instance]) -> bool:
    """Whether an ended task's log is brought home: it ended with an exit code, or Mithril
    stopped its instance (which may still answer); not one that never started or was taken."""
    return record.exit_code is not None or stopped_instance(bid, instances) is not None


def node_views(bid: Bid, instances: list[Instance], ssh_user: str) -> list[NodeView] | None:
    """The nodes to reach over SSH this poll: every instance of an Allocated bid, each with an
    address, running (to feed and read) or stopped by Mithril (a last read and its log). None
    while any boots, moves (relocating, preempting) or is gone."""
    if bid.status != "Allocated" or len(instances) != bid.instance_quantity:
        return None
    reachable = {"STATUS_RUNNING"} | STOPPED_INSTANCE - {"STATUS_TERMINATED"}
    if any(i.status not in reachable or not i.ssh_destination for i in instances):
        return None
    return [
        NodeView(rank=rank, instance_fid=i.fid, destination=destination_of(i, ssh_user) or "")
        for rank, i in enumerate(instances)
    ]


def record_of(
    bid: Bid,
    instances: list[Instance],
    instance_type: str,
    nodes: list[NodeView] | None,
    *,
    feeding: bool = False,
    ran: bool = False,
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
        ran: The command was seen running in an earlier poll: a node that cannot be read now
            (a network blip) leaves the task running, not provisioning.
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
        _allocated(record, bid, instances, nodes, feeding=feeding, ran=ran)
    return record


def _allocated(
    record: TaskRecord,
    bid: Bid,
    instances: list[Instance],
    nodes: list[NodeView] | None,
    *,
    feeding: bool,
    ran: bool,
) -> None:
    """Fill in ``record`` of an Allocated bid: the instance statuses and the nodes decide."""
    ended = outcome(nodes or [])
    stopped = stopped_instance(bid, instances)
    moving = next((i for i in instances if i.status in MOVING_INSTANCE), None)
    if ended is not None:
        record.exit_code, record.message = ended
        record.status = _ended_status(record.exit_code)
        record.ended_at = datetime.now(UTC)
    elif stopped is not None:
        record.status = TaskStatus.FAILED
        record.ended_at = datetime.now(UTC)
        record.message = (
            f"Mithril reports instance {stopped.fid} {stopped.status} while its bid is still "
            "Allocated: the instance stopped before the task ended; its bid was cancelled"
        )
    elif moving is not None:
        record.status = TaskStatus.PREEMPTING
        record.message = (
            f"Mithril is relocating instance {moving.fid} (STATUS_RELOCATING); the task goes on"
            if moving.status == "STATUS_RELOCATING"
            else f"Mithril is taking the spot instance {moving.fid} back (STATUS_PREEMPTING)"
        )
    else:
        booted = len(instances) == bid.instance_quantity and all(
            i.status == "STATUS_RUNNING" for i in instances
        )
        if nodes and all(n.status is not None for n in nodes):
            running = all(n.status and n.status.state != "starting" for n in nodes)
        else:
            running = ran or not feeding
        other = next(
            (i for i in instances if i.status not in BOOTING_INSTANCE | {"STATUS_RUNNING"}), None
        )
        if booted and running:
            record.status = TaskStatus.RUNNING
        elif other is not None:  # STATUS_PAUSED, or newer than this client: keep polling
            record.status = TaskStatus.RUNNING if ran else TaskStatus.PROVISIONING
            record.message = f"Mithril reports instance {other.fid} status {other.status!r}"
        else:
            record.status = TaskStatus.PROVISIONING
            if booted and not all(i.ssh_destination for i in instances):
                record.message = "waiting for the instance's SSH address (ssh_destination)"


def past_boot_limit(
    record: TaskRecord,
    instances: list[Instance],
    limit: float,
    *,
    ran: bool = False,
    now: datetime | None = None,
) -> None:
    """End (``failed``) a task still provisioning ``limit`` seconds after its allocation: its
    instance never started the command (sshd never answered, the node never got ready).

    Never a task whose command ran (``ran``), nor one with an instance in a status other than
    booting or running (paused, newer than this client): only booting is bounded. ``now`` is on
    the API's clock (the instances' ``created_at`` are); default: this machine's.
    """
    if record.status != TaskStatus.PROVISIONING or not instances or ran:
        return
    if any(i.status not in BOOTING_INSTANCE | {"STATUS_RUNNING"} for i in instances):
        return
    waited = ((now or datetime.now(UTC)) - min(i.created_at for i in instances)).total_seconds()
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
