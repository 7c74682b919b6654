"""The scheduler: queue, parallelism, budget, retries, cancellation and outcomes as jobs end.

It is handed a :class:`~hydra_plugins.hydraflow_plugins._strategy.RunStrategy` and knows nothing of
how the strategy runs a job (a task per attempt, or workers). At most ``limit`` attempts are live; an
attempt that ends with a result gives that ``JobReturn``; one that ends without (killed, out of
memory, preempted) is retried up to ``max_retries`` times, then fails with its log tail. No attempt
starts while ``max_total_cost`` could be passed (ended attempts' cost + worst case of live ones +
its own). Ended jobs wait in :meth:`Scheduler.take` until the caller takes them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.hydraflow_plugins._jobs import Job, TaskEndedWithoutResult
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._plan import worst_case
from hydra_plugins.hydraflow_plugins._strategy import (
    LOG_TAIL_LINES,
    Attempt,
    AttemptEnd,
    RunStrategy,
)

__all__ = ["Entry", "JobCancelled", "Scheduler"]

log = logging.getLogger(__name__)


class JobCancelled(TaskEndedWithoutResult):
    """The job was cancelled (``JobSession.cancel``) before it produced a result."""


@dataclass
class Entry:
    """One submitted job and its attempts (the progress display reads it as a ``JobView``)."""

    job: Job
    retries: int = 0
    status_text: str = "queued"
    attempt: Attempt | None = None
    result: JobReturn | None = None
    failure: TaskEndedWithoutResult | None = None
    started_at: float | None = None
    ended_at: float | None = None
    spent: float = 0.0  # dollars of ended attempts (price × their time)
    cancelling: bool = False  # cancelled while running; its attempt is being interrupted

    @property
    def num(self) -> int:
        return self.job.num

    @property
    def overrides_text(self) -> str:
        return self.job.overrides_text

    @property
    def instance_type(self) -> str:
        return self.job.instance_type

    @property
    def gpus(self) -> int:
        return self.job.gpus

    @property
    def task_id(self) -> str:
        return self.attempt.task_id if self.attempt is not None else ""

    def elapsed_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def cost_text(self) -> str:
        return self.attempt.cost_text if self.attempt is not None else "$0.00"

    @property
    def failed(self) -> bool:
        """Whether the job ended without a completed result."""
        return self.result is None or self.result.status == JobStatus.FAILED


class Scheduler:
    """Runs submitted jobs to an outcome through ``strategy``, ``limit`` attempts at a time.

    Args:
        strategy: How jobs run.
        options: The launcher's settings (``max_retries``, ``max_total_cost``, run-time limit).
        limit: Attempts live at once.
        on_change: Called after every pass (the progress display).
        message: Prints one line for the user.
    """

    def __init__(
        self,
        strategy: RunStrategy,
        options: LauncherOptions,
        limit: int,
        on_change: Callable[[], None] = lambda: None,
        message: Callable[[str], None] = print,
    ) -> None:
        self.strategy = strategy
        self.options = options
        self.limit = limit
        self.entries: dict[int, Entry] = {}
        self.queue: deque[Entry] = deque()
        self.live: list[Entry] = []
        self._ended: list[Entry] = []
        self._reported: set[int] = set()
        self.final = False  # no more jobs will be submitted (Hydra's launch)
        self._on_change = on_change
        self._message = message

    # -- the caller's side -----------------------------------------------------------------------
    def submit(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` (prepared first, all or none) and start what fits."""
        for job in jobs:
            entry = self.entries.get(job.num)
            if entry is not None and entry.ended_at is None:
                raise ValueError(f"job #{job.num} was submitted already and has not ended")
        self.strategy.prepare(jobs)
        for job in jobs:
            entry = Entry(job)
            self.entries[job.num] = entry
            self._reported.discard(job.num)
            self.queue.append(entry)
        self._fill()

    def cancel(self, num: int, graceful: bool = True) -> None:
        """Stop job ``num`` (queued or running); its outcome is ``FAILED`` ("cancelled").

        A running job is first asked to stop while its task lives on (``graceful``, when the
        strategy can: a warm worker stays warm); its outcome then comes once it has stopped.
        """
        entry = self.entries.get(num)
        if entry is None or entry.ended_at is not None or (entry.cancelling and graceful):
            return
        if entry in self.queue:
            self.queue.remove(entry)
        if entry in self.live:
            assert entry.attempt is not None
            if graceful and self.strategy.interrupt(entry.attempt, _cancelled(entry)):
                entry.cancelling = True
                entry.status_text = "cancelling"
                return
            self.strategy.stop(entry.attempt)
            self.live.remove(entry)
            self._account(entry)
        self._end_cancelled(entry)

    @property
    def active(self) -> set[int]:
        """Jobs submitted and not yet taken by :meth:`take`."""
        return set(self.entries) - self._reported

    def take(self) -> list[Entry]:
        """The jobs that ended since the last call."""
        ended, self._ended = self._ended, []
        self._reported.update(e.num for e in ended)
        return ended

    def step(self) -> None:
        """One pass: start what fits, poll the live attempts, settle the ended ones."""
        self._fill()
        if self.queue and not self.live:  # nothing live frees budget: the rest cannot start
            self._skip_over_budget()
        if self.live:
            ended = self.strategy.poll([e.attempt for e in self.live if e.attempt is not None])
            for entry in list(self.live):
                assert entry.attempt is not None
                end = ended.get(entry.num)
                if entry.cancelling:
                    if end is not None:  # it has stopped: the cancellation is its outcome
                        self.live.remove(entry)
                        self._account(entry)
                        self._end_cancelled(entry)
                    continue
                entry.status_text = entry.attempt.status_text
                if end is not None:
                    self.live.remove(entry)
                    self._settle(entry, end)
            self._fill()
        self.strategy.release({e.instance_type for e in self.queue}, self.final)
        self._on_change()

    def stop_all(self) -> list[str]:
        """Stop every live attempt (an exit path); what was stopped, for the user."""
        stopped: list[str] = []
        for entry in list(self.live):
            assert entry.attempt is not None
            try:
                self.strategy.stop(entry.attempt)
                stopped.append(f"{entry.task_id} (job #{entry.num})")
                entry.status_text = "cancelled"
            except Exception as error:
                self._message(f"[flow] could not cancel task {entry.task_id}: {error}")
        self.live.clear()
        return stopped

    # -- inside ----------------------------------------------------------------------------------
    def _fill(self) -> None:
        while self.queue and len(self.live) < self.limit and self._affordable(self.queue[0]):
            entry = self.queue.popleft()
            entry.attempt = self.strategy.start(entry.job, entry.retries)
            entry.status_text = entry.attempt.status_text
            if entry.started_at is None:
                entry.started_at = entry.attempt.started
            self.live.append(entry)

    def _settle(self, entry: Entry, end: AttemptEnd) -> None:
        self._account(entry)
        if end.result is not None:
            ok = end.result.status == JobStatus.COMPLETED
            entry.status_text = "completed" if ok else "failed (raised)"
            self._end(entry, result=end.result)
            return
        assert entry.attempt is not None
        if entry.retries < self.options.max_retries:
            entry.retries += 1
            log.warning(
                f"job #{entry.num}: {end.how} without a result; "
                f"retry {entry.retries}/{self.options.max_retries}"
            )
            entry.status_text = f"retrying ({entry.retries}/{self.options.max_retries})"
            self.queue.appendleft(entry)
            return
        entry.status_text = f"{entry.attempt.status_text} (no result)"
        self._end(entry, failure=TaskEndedWithoutResult(_no_result_message(entry, end)))

    def _account(self, entry: Entry) -> None:
        if entry.attempt is not None:
            hours = (time.monotonic() - entry.attempt.started) / 3600.0
            entry.spent += entry.job.price_per_hour * hours

    def _end(
        self,
        entry: Entry,
        *,
        result: JobReturn | None = None,
        failure: TaskEndedWithoutResult | None = None,
    ) -> None:
        entry.result = result
        entry.failure = failure
        entry.ended_at = time.monotonic()
        self._ended.append(entry)

    def _end_cancelled(self, entry: Entry) -> None:
        entry.status_text = "cancelled"
        self._end(entry, failure=JobCancelled(_cancelled(entry)))

    def _worst_case(self, entry: Entry) -> float:
        return worst_case(entry.job.price_per_hour, self.options.max_run_time_hours)

    def _committed(self) -> float:
        """Dollars spent by ended attempts plus the worst case of every live one."""
        spent = sum(e.spent for e in self.entries.values())
        return spent + sum(self._worst_case(e) for e in self.live)

    def _affordable(self, entry: Entry) -> bool:
        if self.options.max_total_cost is None:
            return True
        return self._committed() + self._worst_case(entry) <= self.options.max_total_cost

    def _skip_over_budget(self) -> None:
        if self._affordable(self.queue[0]):
            return
        spent, cap = self._committed(), self.options.max_total_cost or 0.0
        first = self.queue[0]
        for entry in self.queue:
            entry.status_text = "not started (budget)"
            self._end(
                entry,
                failure=TaskEndedWithoutResult(
                    f"Job #{entry.num} ({entry.overrides_text}) was not started: ${spent:,.2f} "
                    f"spent plus its worst case ${self._worst_case(entry):,.2f} would pass "
                    f"hydra.launcher.max_total_cost=${cap:,.2f}"
                ),
            )
        self._message(
            f"[flow] max_total_cost: {len(self.queue)} job(s) not started — ${spent:,.2f} spent, "
            f"and starting job #{first.num} (worst case ${self._worst_case(first):,.2f}) would "
            f"pass hydra.launcher.max_total_cost=${cap:,.2f}"
        )
        self.queue.clear()


def _cancelled(entry: Entry) -> str:
    return f"Job #{entry.num} ({entry.overrides_text}) cancelled"


def _no_result_message(entry: Entry, end: AttemptEnd) -> str:
    from hydra_plugins.hydraflow_plugins._remote_env import env_failure

    attempts = f" after {entry.retries + 1} attempts" if entry.retries else ""
    why = env_failure(end.tail)
    lines = [
        f"Job #{entry.num} ({entry.overrides_text}) produced no result{attempts}: {end.how}"
        + (
            f": {why}"
            if why
            else ". The process was killed or crashed before Hydra's job finished "
            "(out of memory, a signal, a time limit, or a cancellation)."
        ),
        f"Last {LOG_TAIL_LINES} log lines of the task ({end.log_path}):",
        end.tail or "(empty log)",
    ]
    return "\n".join(lines)
