"""What the worker strategies share (:mod:`._workers` local, :mod:`._remote_workers` ssh/mithril).

Both keep a list of workers, each with at most one attempt; how an attempt's end is read differs
(a done mark in a local folder, one listing per host and a download), what follows does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from hydra_plugins.hydraflow_plugins._strategy import Attempt, AttemptEnd

if TYPE_CHECKING:
    from flow_backend import Task

__all__ = ["collect_ends", "idle_unwanted"]


class PoolWorker(Protocol):
    """A worker task as the pool sees it."""

    instance_type: str
    task: Task
    attempt: Attempt | None
    idle_since: float


W = TypeVar("W", bound=PoolWorker)


def collect_ends(
    workers: list[W],
    end_of: Callable[[W, Attempt], AttemptEnd | None],
    drop: Callable[[W], None],
) -> dict[int, AttemptEnd]:
    """The attempts that ended (by job number), read with ``end_of``; their workers go idle.

    An idle worker whose task ended leaves the list (nothing was lost); a worker whose job ended
    without a result (it took the worker down, or the worker was preempted) is dropped.
    """
    ended: dict[int, AttemptEnd] = {}
    for worker in list(workers):
        attempt = worker.attempt
        if attempt is None:
            if worker.task.is_terminal:
                workers.remove(worker)
            continue
        end = end_of(worker, attempt)
        if end is None:
            continue
        ended[attempt.job.num] = end
        worker.attempt = None
        worker.idle_since = time.monotonic()
        if end.result is None:
            drop(worker)
    return ended


def idle_unwanted(
    workers: Iterable[W], wanted: Collection[str], final: bool, grace: float
) -> list[W]:
    """The idle workers the queue no longer needs: of a type no queued job wants, idle for
    ``grace`` seconds (at once when ``final``: no more jobs can come)."""
    now = time.monotonic()
    return [
        worker
        for worker in workers
        if worker.attempt is None
        and worker.instance_type not in wanted
        and (final or now - worker.idle_since >= grace)
    ]
