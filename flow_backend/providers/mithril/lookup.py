"""Finding a provider's bids and their instances with as few list calls as possible."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from flow_backend.errors import ResourceNotFoundError, TaskNotFoundError
from flow_backend.providers.mithril.api import Bid, Instance, MithrilClient
from flow_backend.providers.mithril.api.models import InstanceStatus

__all__ = ["find_bids", "instances_for", "not_found", "rank_order"]

T = TypeVar("T")

#: Beyond this many bids, list the project's live instances instead of filtering by bid id.
BID_FILTER_MAX = 50
_LIVE_INSTANCE: list[InstanceStatus] = [
    "STATUS_NEW",
    "STATUS_CONFIRMED",
    "STATUS_INITIALIZING",
    "STATUS_STARTING",
    "STATUS_RUNNING",
    "STATUS_PREEMPTING",
    "STATUS_STOPPING",
]


def not_found(task_id: str) -> TaskNotFoundError:
    """The error for a task id that is no bid of the project."""
    return TaskNotFoundError(
        f"No Mithril task (spot bid) {task_id!r} in this project",
        field="task_id",
        value=task_id,
        hint="List tasks with `flow status`; check MITHRIL_PROJECT",
    )


def find_bids(client: MithrilClient, project: str, task_ids: list[str]) -> dict[str, Bid]:
    """The bids with these ids: one GET for one id, else the newest-first list until all are seen.

    Raises:
        TaskNotFoundError: An id is no bid of the project.
    """
    if len(task_ids) == 1:
        try:
            return {task_ids[0]: client.get_bid(task_ids[0])}
        except ResourceNotFoundError:
            raise not_found(task_ids[0]) from None
    wanted = set(task_ids)
    found: dict[str, Bid] = {}
    for bid in client.iter_bids(project=project):
        if bid.fid in wanted:
            found[bid.fid] = bid
            if len(found) == len(wanted):
                break
    missing = [task_id for task_id in task_ids if task_id not in found]
    if missing:
        raise not_found(missing[0])
    return found


def _instances_of(
    client: MithrilClient, project: str, bids: Iterable[Bid]
) -> dict[str, list[Instance]]:
    wanted = {bid.fid for bid in bids}
    if not wanted:
        return {}
    if len(wanted) <= BID_FILTER_MAX:
        listed = client.list_instances(project, bid_fids=sorted(wanted))
    else:
        listed = client.list_instances(project, statuses=_LIVE_INSTANCE)
    grouped: dict[str, list[Instance]] = {}
    for instance in listed:
        if instance.bid in wanted:
            grouped.setdefault(instance.bid, []).append(instance)
    return grouped


def rank_order(bid: Bid, instances: list[Instance]) -> list[Instance]:
    """Instances in the bid's order: rank 0 first."""

    def key(instance: Instance) -> int:
        return (
            bid.instances.index(instance.fid)
            if instance.fid in bid.instances
            else len(bid.instances)
        )

    return sorted(instances, key=key)


def instances_for(
    client: MithrilClient, project: str, bids: list[Bid]
) -> dict[str, list[Instance]]:
    """Instances per bid, rank 0 first: live bids in one listing, ended ones by id (once each)."""
    grouped = _instances_of(  # newer statuses (Relocating, ...) count as live
        client, project, [b for b in bids if b.status not in ("Open", "Paused", "Terminated")]
    )
    ended = [b for b in bids if b.status == "Terminated" and b.instances]
    for start in range(0, len(ended), BID_FILTER_MAX):
        grouped.update(_instances_of(client, project, ended[start : start + BID_FILTER_MAX]))
    return {bid.fid: rank_order(bid, grouped.get(bid.fid, [])) for bid in bids}
