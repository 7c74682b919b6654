"""What the local and remote worker strategies share (``_worker_pool``), in memory.

Which idle workers go (per instance type: a sweep of mixed types keeps a worker only while a
queued job of its type may need it), what a worker becomes when its job ends with or without a
result, and when a busy job must be stopped with its worker (an ignored cancel, a time limit).
The sweeps themselves: ``test_workers.py`` (local), ``test_remote_faults.py`` (mithril),
``tests/flow_backend/ssh/test_ssh_sweep.py`` (ssh).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.hydraflow_plugins._jobs import Job
from hydra_plugins.hydraflow_plugins._paths import JobFiles
from hydra_plugins.hydraflow_plugins._strategy import Attempt, AttemptEnd
from hydra_plugins.hydraflow_plugins._worker_pool import collect_ends, idle_unwanted, overdue

if TYPE_CHECKING:
    from flow_backend import Task


@dataclass
class _TaskState:
    """What the pool reads from a worker's task."""

    task_id: str
    is_terminal: bool = False


def _task(task_id: str, is_terminal: bool = False) -> Task:
    return cast("Task", _TaskState(task_id, is_terminal))


@dataclass
class _Worker:
    """A worker as the pool sees it."""

    instance_type: str
    task: Task
    attempt: Attempt | None = None
    idle_since: float = field(default_factory=time.monotonic)
    cancelled_at: float | None = None


def _busy(tmp_path: Path, num: int, instance_type: str = "a100") -> _Worker:
    job = Job(num, (), "", instance_type, f"hf-t-{num}", JobFiles.for_job(tmp_path, num))
    task = _task(f"w-{num}")
    return _Worker(instance_type, task, Attempt(job, 0, task))


def test_idle_workers_go_by_instance_type_at_once_when_no_job_can_come() -> None:
    long_idle = time.monotonic() - 60
    a100, h100 = _Worker("a100", _task("a")), _Worker("h100", _task("h"), idle_since=long_idle)
    busy = _Worker("cpu", _task("c"), attempt=cast(Any, object()))
    workers = [a100, h100, busy]
    # queued jobs want a100 only: the h100 worker idle past the grace goes, the fresh one stays
    assert idle_unwanted(workers, {"a100"}, final=False, grace=10) == [h100]
    assert idle_unwanted(workers, {"h100"}, final=False, grace=10) == []  # a100 within its grace
    # no more jobs will be submitted: every idle worker no queued job wants goes now; busy stays
    assert idle_unwanted(workers, {"a100"}, final=True, grace=10) == [h100]
    assert idle_unwanted(workers, set(), final=True, grace=10) == [a100, h100]


def test_a_job_ended_without_result_drops_its_worker_and_with_one_frees_it(tmp_path: Path) -> None:
    done, crashed, running = (_busy(tmp_path, n) for n in range(3))
    ended_idle = _Worker("a100", _task("gone", is_terminal=True))  # an idle worker that ended
    workers = [done, crashed, running, ended_idle]
    result = JobReturn()
    result.status = JobStatus.COMPLETED
    ends = {0: AttemptEnd(result), 1: AttemptEnd(None, "worker task w-1 ended failed", "tail")}
    dropped: list[_Worker] = []

    def drop(worker: _Worker) -> None:
        dropped.append(worker)
        workers.remove(worker)

    found = collect_ends(workers, lambda w, a: ends.get(a.job.num), drop)
    assert sorted(found) == [0, 1] and found[1].how == "worker task w-1 ended failed"
    assert dropped == [crashed]  # the job took it down (or it was preempted): never reused
    assert workers == [done, running]  # the ended idle worker left the list; done is idle now
    assert done.attempt is None and running.attempt is not None


def test_a_busy_job_is_stopped_with_its_worker_past_its_time_limit_or_cancel_grace(
    tmp_path: Path,
) -> None:
    worker = _busy(tmp_path, 0)
    now = time.monotonic()
    assert overdue(worker, now - 5, grace=3, hours=None) is None  # no limit: runs on
    assert overdue(worker, now - 5, grace=3, hours=1.0) is None
    why = overdue(worker, now - 5, grace=3, hours=1 / 3600)  # 1 s
    assert why is not None and why.startswith("worker task w-0 ")
    assert "max_run_time_hours" in why
    worker.cancelled_at = now - 1  # cancelled 1 s ago: it has the grace to stop by itself
    assert overdue(worker, now - 5, grace=3, hours=1 / 3600) is None
    worker.cancelled_at = now - 4
    why = overdue(worker, now - 5, grace=3, hours=None)
    assert why is not None and "did not stop within 3 s of its cancellation" in why
