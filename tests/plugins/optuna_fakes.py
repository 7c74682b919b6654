"""An in-process job session with a virtual clock, for the ``flow_optuna`` search loop's tests.

It follows the launcher's JobSession contract: ``submit`` queues a job and starts it when a slot is
free; ``outcomes`` advances the clock to the next job end (or the timeout) and returns what ended;
``cancel`` stops a queued or running job (its outcome is FAILED "cancelled"). A job's duration,
result and logged metric curve are functions of its params, so tests control them exactly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

Params = dict[str, Any]


def _params(overrides: Sequence[str]) -> Params:
    params: Params = {}
    for text in overrides:
        key, value = text.split("=", 1)
        try:
            params[key] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            params[key] = value
    return params


@dataclass
class FakeJob:
    num: int
    params: Params
    submitted: float
    started: float | None = None
    ended: float | None = None
    cancelled: bool = False


@dataclass
class FakeSession:
    """Jobs run for ``duration(params)`` virtual seconds and return ``result(params)``.

    ``result`` may raise: the job is then FAILED with that error. ``curve(params, step)`` is the
    metric a job logs at the end of each of its ``steps`` equal parts (see :class:`FakeMetrics`).
    ``interrupt_at`` raises KeyboardInterrupt from ``outcomes`` once the clock reaches it.
    """

    slots: int
    duration: Callable[[Params], float]
    result: Callable[[Params], Any]
    curve: Callable[[Params, int], float] | None = None
    steps: int = 10
    interrupt_at: float | None = None
    now: float = 0.0
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)
    running: set[int] = field(default_factory=set)
    pending: list[int] = field(default_factory=list)  # cancelled, not reported yet
    exited: bool = False

    # -- the contract --------------------------------------------------------------------------
    def submit(self, num: int, overrides: Sequence[str]) -> None:
        assert num not in self.jobs, f"job #{num} submitted twice"
        self.jobs[num] = FakeJob(num, _params(overrides), self.now)
        self.queue.append(num)
        self._start()

    def outcomes(self, timeout: float | None = None) -> list[tuple[int, JobReturn]]:
        if self.pending:
            done, self.pending = self.pending, []
            self._start()
            return [(num, self._return(num)) for num in done]
        if not self.running:
            return []
        next_end = min(self._end_of(num) for num in self.running)
        limit = self.now + timeout if timeout is not None else math.inf
        if self.interrupt_at is not None and min(next_end, limit) >= self.interrupt_at:
            self.now = self.interrupt_at
            raise KeyboardInterrupt
        if next_end > limit:
            self.now = limit
            return []
        self.now = next_end
        ended = sorted(num for num in self.running if self._end_of(num) <= self.now)
        for num in ended:
            self.running.discard(num)
            self.jobs[num].ended = self.now
        self._start()
        return [(num, self._return(num)) for num in ended]

    def cancel(self, num: int) -> None:
        job = self.jobs[num]
        if num in self.queue:
            self.queue.remove(num)
        elif num in self.running:
            self.running.discard(num)
        else:
            return
        job.cancelled, job.ended = True, self.now
        self.pending.append(num)

    @property
    def active(self) -> set[int]:
        return set(self.queue) | self.running | set(self.pending)

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        for num in list(self.active):
            self.cancel(num)
        self.exited = True

    # -- helpers -------------------------------------------------------------------------------
    def clock(self) -> float:
        return self.now

    def _start(self) -> None:
        while self.queue and len(self.running) + len(self.pending) < self.slots:
            num = self.queue.popleft()
            self.jobs[num].started = self.now
            self.running.add(num)

    def _end_of(self, num: int) -> float:
        job = self.jobs[num]
        assert job.started is not None
        return job.started + self.duration(job.params)

    def _return(self, num: int) -> JobReturn:
        job = self.jobs[num]
        ret = JobReturn()
        ret.overrides = [f"{k}={v}" for k, v in job.params.items()]
        if job.cancelled:
            ret.status = JobStatus.FAILED
            ret.return_value = RuntimeError(f"job #{num} cancelled")
            return ret
        try:
            ret.return_value = self.result(job.params)
            ret.status = JobStatus.COMPLETED
        except Exception as error:
            ret.status = JobStatus.FAILED
            ret.return_value = error
        return ret


@dataclass
class FakeMetrics:
    """What running jobs of a :class:`FakeSession` have logged of ``metric`` by its clock."""

    session: FakeSession
    metric: str = "val_loss"
    logs: bool = True
    reads: int = 0

    def read(self, nums: Collection[int]) -> dict[int, dict[int, float]]:
        self.reads += 1
        found: dict[int, dict[int, float]] = {}
        session = self.session
        for num in nums:
            job = session.jobs.get(num)
            if not self.logs or job is None or job.started is None or session.curve is None:
                continue
            end = job.ended if job.ended is not None else session.now
            part = session.duration(job.params) / session.steps
            steps = min(session.steps, int((end - job.started) / part + 1e-9))
            if steps:
                found[num] = {k: session.curve(job.params, k) for k in range(steps)}
        return found

    def logged_metrics(self, num: int) -> list[str]:
        return ["accuracy"]


@dataclass
class Recorded:
    """TrialRecords that remember what they were told: (job num, trial number, state name)."""

    entries: list[tuple[int, int, str]] = field(default_factory=list)

    def ended(self, num: int, trial: Any) -> None:
        self.entries.append((num, trial.number, trial.state.name))


def suggest_depth(config: Any, trial: Any) -> None:
    """A ``custom_search_space``: one more param, suggested in Python."""
    trial.suggest_int("depth", 1, 3)
