"""Finding a provider's bids and their instances with as few list calls as possible."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from flow_backend.errors import ResourceNotFoundError
from flow_backend.providers.mithril.api import Bid, Instance, MithrilClient
from flow_backend.providers.mithril.api.models import InstanceStatus
from flow_backend.providers.mithril.visibility import check_unseen

__all__ = ["find_bids", "instances_for", "rank_order"]

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


def find_bids(
    client: MithrilClient,
    project: str,
    task_ids: list[str],
    placed_age: Callable[[str], float | None] | None = None,
) -> dict[str, Bid]:
    """The bids with these ids: one GET for one id, else the newest-first list until all are seen.

    Args:
        client: The API client.
        project: The project's id.
        task_ids: Bid ids.
        placed_age: Seconds since this machine placed a bid (None: it did not). A bid placed
            within the grace that the API does not show yet is left out of the result (the
            caller reports it pending) instead of raising.

    Raises:
        TaskNotFoundError: An id is no bid of the project (or one placed here that the API still
            does not show after the grace, see :mod:`~flow_backend.providers.mithril.visibility`).
    """
    found: dict[str, Bid] = {}
    if len(task_ids) == 1:
        with contextlib.suppress(ResourceNotFoundError):
            found[task_ids[0]] = client.get_bid(task_ids[0])
    else:
        wanted = set(task_ids)
        for bid in client.iter_bids(project=project):
            if bid.fid in wanted:
                found[bid.fid] = bid
                if len(found) == len(wanted):
                    break
    for task_id in task_ids:
        if task_id not in found:
            check_unseen(task_id, placed_age(task_id) if placed_age else None)
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
