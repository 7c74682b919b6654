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

__all__ = ["WORKER_MODULE", "collect_ends", "idle_unwanted", "overdue"]

WORKER_MODULE = "hydra_plugins.hydraflow_plugins._worker"  # what a worker task runs (``-m``)


class PoolWorker(Protocol):
    """A worker task as the pool sees it."""

    instance_type: str
    task: Task
    attempt: Attempt | None
    idle_since: float
    cancelled_at: float | None  # when its current job was interrupted


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


def overdue(
    worker: PoolWorker, started: float | None, grace: float, hours: float | None
) -> str | None:
    """Why the worker's busy job must now be stopped with its worker, or ``None``.

    Either it was interrupted more than ``grace`` seconds ago and has not stopped, or it has run
    (since ``started``) past ``max_run_time_hours`` — a limit per job, which the launcher keeps
    because a worker lives through many jobs.
    """
    now = time.monotonic()
    if worker.cancelled_at is not None:
        if now - worker.cancelled_at <= grace:
            return None
        return (
            f"its job did not stop within {grace:g} s of its cancellation: "
            f"worker task {worker.task.task_id} was stopped"
        )
    if hours is not None and started is not None and now - started > hours * 3600.0:
        from flow_backend.providers.local.outcome import time_limit_message

        return f"worker task {worker.task.task_id} {time_limit_message(hours)}"
    return None
