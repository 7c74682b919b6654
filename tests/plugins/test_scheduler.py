"""The launcher's scheduler, in memory: a strategy whose attempts end when the test says so.

Queue, parallelism, budget, retries, cancellation and the order outcomes stream out in, without a
process or a provider.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.hydraflow_plugins._jobs import Job, TaskEndedWithoutResult
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import JobFiles
from hydra_plugins.hydraflow_plugins._scheduler import JobCancelled, Scheduler
from hydra_plugins.hydraflow_plugins._strategy import Attempt, AttemptEnd


@dataclass
class _Status:
    value: str


@dataclass
class _Task:
    """What the scheduler and the display read from a task."""

    task_id: str
    status: _Status = field(default_factory=lambda: _Status("running"))
    total_cost: str = "$0.00"


class MemoryStrategy:
    """Attempts that run until the test ends them with :meth:`finish` or :meth:`crash`."""

    provider = "memory"

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []  # (job, attempt), in start order
        self.stopped: list[int] = []
        self.released: list[tuple[set[str], bool]] = []
        self.prepared: list[int] = []
        self.interrupted: list[tuple[int, str]] = []
        self.interrupts = False  # whether attempts stop gracefully (as on a warm worker)
        self.closed = False
        self._ends: dict[int, AttemptEnd] = {}

    def prepare(self, jobs: Sequence[Job]) -> None:
        self.prepared.extend(job.num for job in jobs)

    def start(self, job: Job, attempt: int) -> Attempt:
        self.started.append((job.num, attempt))
        return Attempt(job, attempt, _Task(f"t{job.num}.{attempt}"))  # type: ignore[arg-type]

    def poll(self, attempts: Sequence[Attempt]) -> dict[int, AttemptEnd]:
        running = {a.job.num for a in attempts}
        ended = {num: end for num, end in self._ends.items() if num in running}
        for num in ended:
            del self._ends[num]
        return ended

    def stop(self, attempt: Attempt) -> None:
        self.stopped.append(attempt.job.num)

    def interrupt(self, attempt: Attempt, reason: str) -> bool:
        if self.interrupts:
            self.interrupted.append((attempt.job.num, reason))
        return self.interrupts

    def release(self, wanted: Collection[str], final: bool) -> None:
        self.released.append((set(wanted), final))

    def close(self) -> list[str]:
        self.closed = True
        return []

    # -- the test's controls ---------------------------------------------------------------------
    def finish(self, num: int, value: object = None) -> None:
        ret = JobReturn()
        ret.status = JobStatus.COMPLETED
        ret.return_value = value
        self._ends[num] = AttemptEnd(ret)

    def crash(self, num: int) -> None:
        self._ends[num] = AttemptEnd(None, f"task t{num} ended failed, exit code -9", "dying now")


def _job(tmp_path: Path, num: int, instance: str = "cpu", price: float = 0.0) -> Job:
    return Job(
        num=num,
        overrides=(f"x={num}",),
        overrides_text=f"x={num}",
        instance_type=instance,
        task_name=f"hf-test-{num}",
        files=JobFiles.for_job(tmp_path, num),
        price_per_hour=price,
    )


def _scheduler(
    strategy: MemoryStrategy, limit: int = 2, **options: object
) -> tuple[Scheduler, list[str]]:
    messages: list[str] = []
    scheduler = Scheduler(strategy, LauncherOptions(**options), limit, message=messages.append)  # type: ignore[arg-type]
    return scheduler, messages


def test_at_most_limit_jobs_run_and_outcomes_stream_in_end_order(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=2)
    scheduler.submit([_job(tmp_path, n) for n in range(5)])
    assert strategy.prepared == [0, 1, 2, 3, 4]  # all prepared before any could fail to start
    assert [num for num, _ in strategy.started] == [0, 1]
    scheduler.step()
    assert scheduler.take() == []
    strategy.finish(1, "one")
    scheduler.step()
    (ended,) = scheduler.take()
    assert (ended.num, ended.result.return_value) == (1, "one")  # type: ignore[union-attr]
    assert [num for num, _ in strategy.started] == [0, 1, 2]  # the freed slot was filled
    assert scheduler.active == {0, 2, 3, 4}
    for num in (0, 2, 3, 4):
        strategy.finish(num)
        scheduler.step()
    assert sorted(e.num for e in scheduler.take()) == [0, 2, 3, 4]
    assert scheduler.active == set()


def test_a_job_that_dies_is_retried_then_fails_with_its_log_tail(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=1, max_retries=1)
    scheduler.submit([_job(tmp_path, 0), _job(tmp_path, 1)])
    strategy.crash(0)
    scheduler.step()
    assert scheduler.take() == []
    assert strategy.started == [(0, 0), (0, 1)]  # the retry goes first, before job 1
    strategy.crash(0)
    scheduler.step()
    (ended,) = scheduler.take()
    assert ended.result is None and isinstance(ended.failure, TaskEndedWithoutResult)
    message = str(ended.failure)
    assert "Job #0 (x=0) produced no result after 2 attempts" in message
    assert "exit code -9" in message and "dying now" in message
    assert strategy.started[-1] == (1, 0)


def test_a_job_that_raised_is_not_retried(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=1, max_retries=3)
    scheduler.submit([_job(tmp_path, 0)])
    failed = JobReturn()
    failed.status = JobStatus.FAILED
    failed.return_value = ValueError("boom")
    strategy._ends[0] = AttemptEnd(failed)
    scheduler.step()
    (ended,) = scheduler.take()
    assert ended.result is failed and ended.status_text == "failed (raised)"
    assert strategy.started == [(0, 0)]


def test_cancel_a_queued_and_a_running_job(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=1)
    scheduler.submit([_job(tmp_path, 0), _job(tmp_path, 1)])
    scheduler.cancel(1)  # queued: never starts
    scheduler.cancel(0)  # running: its attempt is stopped
    ended = {e.num: e for e in scheduler.take()}
    assert set(ended) == {0, 1}
    assert all(isinstance(e.failure, JobCancelled) for e in ended.values())
    assert "cancelled" in str(ended[1].failure)
    assert strategy.stopped == [0]
    assert strategy.started == [(0, 0)]
    assert scheduler.active == set()
    scheduler.cancel(0)  # cancelling an ended job changes nothing
    assert scheduler.take() == []


def test_a_running_job_that_can_be_interrupted_ends_cancelled_once_it_has_stopped(
    tmp_path: Path,
) -> None:
    strategy = MemoryStrategy()
    strategy.interrupts = True
    scheduler, _ = _scheduler(strategy, limit=1)
    scheduler.submit([_job(tmp_path, 0), _job(tmp_path, 1)])
    scheduler.cancel(0)
    scheduler.cancel(0)  # asked twice: interrupted once
    assert strategy.interrupted == [(0, "Job #0 (x=0) cancelled")]
    assert strategy.stopped == []  # its task lives on
    scheduler.step()
    assert scheduler.take() == [] and scheduler.active == {0, 1}  # still stopping: slot busy
    assert strategy.started == [(0, 0)]
    strategy.finish(0, "a result it wrote while stopping")
    scheduler.step()
    (ended,) = scheduler.take()
    assert ended.num == 0 and isinstance(ended.failure, JobCancelled) and ended.result is None
    assert strategy.started == [(0, 0), (1, 0)]  # the slot went to the next job
    scheduler.cancel(1, graceful=False)  # an exit path: stopped at once
    assert strategy.stopped == [1]
    assert [e.num for e in scheduler.take()] == [1]


def test_budget_stops_starting_jobs_that_could_pass_it(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    # each job may cost $2/h × 1 h = $2; $5 allows two at once, never a third
    scheduler, _ = _scheduler(strategy, limit=4, max_total_cost=5.0, max_run_time_hours=1.0)
    scheduler.submit([_job(tmp_path, n, price=2.0) for n in range(3)])
    assert [num for num, _ in strategy.started] == [0, 1]
    strategy.finish(0)
    strategy.finish(1)
    scheduler.step()  # their spent time is tiny: the third now fits
    assert [num for num, _ in strategy.started] == [0, 1, 2]


def test_jobs_that_never_fit_the_budget_fail_with_the_numbers(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, messages = _scheduler(strategy, limit=4, max_total_cost=1.0, max_run_time_hours=1.0)
    scheduler.submit([_job(tmp_path, n, price=2.0) for n in range(2)])
    scheduler.step()
    ended = scheduler.take()
    assert strategy.started == []
    assert [e.num for e in ended] == [0, 1]
    assert "would pass hydra.launcher.max_total_cost=$1.00" in str(ended[0].failure)
    assert any("2 job(s) not started" in m for m in messages)


def test_what_the_queue_still_needs_is_reported_to_the_strategy(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=1)
    scheduler.submit([_job(tmp_path, 0, "cpu"), _job(tmp_path, 1, "a100")])
    scheduler.step()
    assert strategy.released[-1] == ({"a100"}, False)
    strategy.finish(0)
    scheduler.final = True  # no more jobs will come
    scheduler.step()
    assert strategy.released[-1] == (set(), True)  # job 1 started: nothing queued needs anything


def test_stop_all_stops_every_live_attempt(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=2)
    scheduler.submit([_job(tmp_path, n) for n in range(3)])
    stopped = scheduler.stop_all()
    assert stopped == ["t0.0 (job #0)", "t1.0 (job #1)"]
    assert strategy.stopped == [0, 1]


def test_a_job_cannot_be_submitted_twice_while_active(tmp_path: Path) -> None:
    strategy = MemoryStrategy()
    scheduler, _ = _scheduler(strategy, limit=1)
    scheduler.submit([_job(tmp_path, 0)])
    with pytest.raises(ValueError, match="job #0 was submitted already"):
        scheduler.submit([_job(tmp_path, 0)])
