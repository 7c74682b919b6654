"""Bids this machine placed that the API does not show yet.

Mithril's reads lag a new bid: for a moment after ``POST /v2/spot/bids`` answers, ``GET`` and
``DELETE`` of the bid answer 404 and the bid list leaves it out (the SDK retries such a 404, see
``get_task_status``). The provider remembers every bid it places
(:meth:`~flow_backend.providers.mithril.task_store.TaskStore.save_placed`), so any process on
this machine reports such a bid ``pending`` for :data:`VISIBILITY_GRACE` seconds, and only then
as not found; an id nobody here placed is not found at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from flow_backend.errors import TaskNotFoundError
from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.mithril.api import Bid
from flow_backend.providers.mithril.task_store import TaskStore

__all__ = [
    "UNSEEN_MESSAGE",
    "UNSEEN_POLL",
    "VISIBILITY_GRACE",
    "check_unseen",
    "not_found",
    "poll_until",
    "unseen_record",
    "unseen_records",
    "wait_visible",
]

#: Seconds a bid this machine placed may stay unseen by the API before it counts as not found.
VISIBILITY_GRACE = 30.0
#: Seconds before the first and the longest between later looks for a bid placed here that the
#: API does not show yet (the wait doubles from the first to the longest).
UNSEEN_POLL = (0.05, 1.0)
UNSEEN_MESSAGE = "placed; Mithril does not show the new bid yet"
T = TypeVar("T")


def not_found(task_id: str) -> TaskNotFoundError:
    """The error for a task id that is no bid of the project."""
    return TaskNotFoundError.of(
        task_id,
        f"No Mithril task (spot bid) {task_id!r} in this project",
        hint="List tasks with `flow status`; check MITHRIL_PROJECT",
    )


def check_unseen(task_id: str, age: float | None) -> None:
    """Accept a bid the API does not show if this machine placed it ``age`` s ago, within the grace.

    Raises:
        TaskNotFoundError: Nobody here placed it (``age`` None), or the grace has passed.
    """
    if age is None:
        raise not_found(task_id)
    if age >= VISIBILITY_GRACE:
        raise TaskNotFoundError.of(
            task_id,
            f"Mithril still does not show task (spot bid) {task_id!r}, placed from this machine "
            f"{age:.0f} s ago (a new bid shows within seconds)",
            hint="It was deleted or placed in another project: check MITHRIL_PROJECT and the "
            "Mithril console; list tasks with `flow status`",
        )


def _pending(record: TaskRecord) -> TaskRecord:
    record.status = TaskStatus.PENDING
    record.message = UNSEEN_MESSAGE
    return record


def unseen_record(store: TaskStore, task_id: str) -> TaskRecord:
    """The record of a bid placed here that the API does not show yet: ``pending``.

    Raises:
        TaskNotFoundError: Its placement record is gone (the folder was removed meanwhile).
    """
    record = store.placed(task_id)
    if record is None:
        raise not_found(task_id)
    return _pending(record)


def unseen_records(
    store: TaskStore, listed: set[str], name_prefix: str | None = None
) -> list[TaskRecord]:
    """Records of the bids placed here within the grace that the bid list left out, newest first."""
    records = []
    for task_id in store.placed_since(VISIBILITY_GRACE):
        record = None if task_id in listed else store.placed(task_id)
        if record is not None and (name_prefix is None or record.name.startswith(name_prefix)):
            records.append(_pending(record))
    return records


def poll_until(look: Callable[[], T | None], seconds: float | None = None) -> T | None:
    """``look()`` until it gives something, looking again after :data:`UNSEEN_POLL`'s first wait,
    then twice as long each time up to its longest; None once ``seconds`` have passed (``None``:
    no limit, ``look`` raises instead)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    pause, longest = UNSEEN_POLL
    while True:
        found = look()
        if found is not None:
            return found
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        time.sleep(pause if left is None else min(pause, left))
        pause = min(longest, pause * 2)


def wait_visible(find: Callable[[list[str]], dict[str, Bid]], task_id: str) -> Bid:
    """The bid once ``find`` (which leaves out bids placed here moments ago) shows it.

    Raises:
        TaskNotFoundError: Through ``find``: no such bid, or still unseen after the grace.
    """
    bid = poll_until(lambda: find([task_id]).get(task_id))
    assert bid is not None  # no time limit: find raises instead
    return bid
