"""Running the jobs of one launch as Flow tasks: submit, poll, collect, retry, cancel.

At most ``max_parallel`` tasks are live; one ``Flow.refresh_all`` call per poll updates them all. A
task that ends with a result file gives that ``JobReturn``; one that ends without (killed, out of
memory, preempted) is retried up to ``max_retries`` times, then gives ``FAILED`` with its log tail.
Whatever ends the loop — success, an exception, Ctrl-C or SIGTERM — every live task is cancelled.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import JobFiles, output_task_log
from hydra_plugins.hydraflow_plugins._plan import worst_case
from hydra_plugins.hydraflow_plugins._progress import Progress

if TYPE_CHECKING:
    from flow_backend import Flow, Task, TaskConfig

__all__ = ["FlowJob", "TaskEndedWithoutResult", "copy_task_log", "run_jobs"]

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 30
# A task may report its end a moment before its result file is visible (remote copies, NFS).
RESULT_GRACE_SECONDS = 2.0


class TaskEndedWithoutResult(CompactHydraException):
    """A job's task ended (killed, out of memory, preempted, cancelled) without writing a result."""


@dataclass
class FlowJob:
    """One job of a launch and the task running it (the display reads it as a ``JobView``)."""

    num: int
    overrides: list[str]
    overrides_text: str
    instance_type: str
    task_name: str
    files: JobFiles
    price_per_hour: float = 0.0
    task: Task | None = None
    attempts: int = 0
    status_text: str = "queued"
    result: JobReturn | None = None
    failure: TaskEndedWithoutResult | None = None
    started_at: float | None = None
    ended_at: float | None = None
    attempt_started_at: float | None = None
    spent: float = 0.0  # dollars of ended attempts (price × their time)
    remote_output: str | None = None  # where a remote job's output folder was fetched from

    @property
    def task_id(self) -> str:
        return self.task.task_id if self.task is not None else ""

    def elapsed_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def cost_text(self) -> str:
        return self.task.total_cost if self.task is not None else "$0.00"

    def job_return(self, sweep_config: DictConfig | None = None) -> JobReturn:
        """The job's outcome: its result, or ``FAILED`` built from ``sweep_config``."""
        if self.result is not None:
            return self.result
        ret = JobReturn()
        ret.overrides = list(self.overrides)
        if sweep_config is not None:
            task_cfg = OmegaConf.create(OmegaConf.to_container(sweep_config, resolve=False))
            assert isinstance(task_cfg, DictConfig)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            ret.cfg = task_cfg
            ret.hydra_cfg = OmegaConf.create({"hydra": sweep_config.hydra})
            ret.task_name = str(sweep_config.hydra.job.name)
        ret.status = JobStatus.FAILED
        ret.return_value = self.failure or TaskEndedWithoutResult(
            f"job #{self.num} never ran to completion"
        )
        return ret


def run_jobs(
    flow: Flow,
    jobs: Sequence[FlowJob],
    options: LauncherOptions,
    progress: Progress,
    build: Callable[[FlowJob, int], TaskConfig],
    collect: Callable[[FlowJob], None] | None = None,
) -> None:
    """Run every job to an outcome, keeping at most ``max_parallel`` tasks live.

    ``build`` makes the TaskConfig of a job's attempt (0, 1, ...); ``collect`` (remote providers)
    brings a running job's results home once it has finished. No task starts while
    ``max_total_cost`` could be passed (ended attempts' cost + worst case of live ones + its own).
    """
    provider = flow.settings.provider
    limit = options.parallelism(provider, len(jobs))
    poll = options.poll_seconds(provider)
    queue: deque[FlowJob] = deque(jobs)
    live: list[FlowJob] = []
    with _sigterm_as_interrupt():
        try:
            while queue or live:
                while queue and len(live) < limit and _affordable(queue[0], jobs, live, options):
                    job = queue.popleft()
                    live.append(job)
                    _submit(flow, job, build)
                if queue and not live:  # nothing live frees budget: the rest cannot start
                    _skip_over_budget(queue, jobs, options, progress)
                    queue.clear()
                    continue
                flow.refresh_all([job.task for job in live if job.task is not None])
                for job in list(live):
                    assert job.task is not None
                    job.status_text = job.task.status.value
                    if collect is not None and job.result is None and job.task.is_running:
                        collect(job)
                    if job.task.is_terminal and _finish(job, options):
                        live.remove(job)
                    elif job.task.is_terminal:  # retry on a new task
                        live.remove(job)
                        queue.appendleft(job)
                progress.update()
                if live:
                    time.sleep(poll)
        except BaseException as error:
            _cancel_live(flow, live, progress, error)
            if isinstance(error, KeyboardInterrupt):  # Ctrl-C / SIGTERM: no traceback, usual codes
                raise SystemExit(143 if "signal" in str(error) else 130) from None
            raise


def _worst_case(job: FlowJob, options: LauncherOptions) -> float:
    return worst_case(job.price_per_hour, options.max_run_time_hours)


def _committed(jobs: Sequence[FlowJob], live: Sequence[FlowJob], options: LauncherOptions) -> float:
    """Dollars spent by ended attempts plus the worst case of every live one."""
    return sum(job.spent for job in jobs) + sum(_worst_case(job, options) for job in live)


def _affordable(
    job: FlowJob, jobs: Sequence[FlowJob], live: Sequence[FlowJob], options: LauncherOptions
) -> bool:
    if options.max_total_cost is None:
        return True
    return _committed(jobs, live, options) + _worst_case(job, options) <= options.max_total_cost


def _skip_over_budget(
    queue: Sequence[FlowJob], jobs: Sequence[FlowJob], options: LauncherOptions, progress: Progress
) -> None:
    spent = _committed(jobs, [], options)
    for job in queue:
        job.status_text = "not started (budget)"
        job.ended_at = job.ended_at or time.monotonic()
        job.failure = TaskEndedWithoutResult(
            f"Job #{job.num} ({job.overrides_text}) was not started: ${spent:,.2f} spent plus its "
            f"worst case ${_worst_case(job, options):,.2f} would pass "
            f"hydra.launcher.max_total_cost=${options.max_total_cost:,.2f}"
        )
    progress.message(
        f"[flow] max_total_cost: {len(queue)} job(s) not started — ${spent:,.2f} spent, and "
        f"starting job #{queue[0].num} (worst case ${_worst_case(queue[0], options):,.2f}) would "
        f"pass hydra.launcher.max_total_cost=${options.max_total_cost:,.2f}"
    )


def _submit(flow: Flow, job: FlowJob, build: Callable[[FlowJob, int], TaskConfig]) -> None:
    job.task = flow.run(build(job, job.attempts))
    job.status_text = job.task.status.value
    job.attempt_started_at = time.monotonic()
    if job.started_at is None:
        job.started_at = job.attempt_started_at


def _finish(job: FlowJob, options: LauncherOptions) -> bool:
    """Collect an ended task's outcome; ``False`` when the job should run again."""
    assert job.task is not None
    task = job.task
    if job.attempt_started_at is not None:
        job.spent += job.price_per_hour * (time.monotonic() - job.attempt_started_at) / 3600.0
        job.attempt_started_at = None
    _save_task_log(job)
    result = _read_result(job)
    if result is not None:
        job.result = result
        job.ended_at = time.monotonic()
        if result.hydra_cfg is not None:
            copy_task_log(job, Path(str(result.hydra_cfg.hydra.runtime.output_dir)))
        job.status_text = "completed" if result.status == JobStatus.COMPLETED else "failed (raised)"
        return True
    if job.attempts < options.max_retries:
        job.attempts += 1
        log.warning(
            f"job #{job.num}: task {task.task_id} ended {task.status.value} without a result "
            f"({task.message or 'no reason given'}); retry {job.attempts}/{options.max_retries}"
        )
        job.status_text = f"retrying ({job.attempts}/{options.max_retries})"
        return False
    job.ended_at = time.monotonic()
    job.status_text = f"{task.status.value} (no result)"
    job.failure = TaskEndedWithoutResult(_no_result_message(job))
    return True


def _no_result_message(job: FlowJob) -> str:
    assert job.task is not None
    task = job.task
    try:
        tail = str(task.logs(tail=LOG_TAIL_LINES)).rstrip()
    except Exception as error:
        tail = f"(log unavailable: {error})"
    attempts = f" after {job.attempts + 1} attempts" if job.attempts else ""
    lines = [
        f"Job #{job.num} ({job.overrides_text}) produced no result{attempts}: task {task.task_id} "
        f"ended {task.status.value}, exit code {task.exit_code}"
        + (f", {task.message}" if task.message else "")
        + ". The process was killed or crashed before Hydra's job finished "
        "(out of memory, a signal, a time limit, or a cancellation).",
        f"Last {LOG_TAIL_LINES} log lines of the task ({job.files.task_log}):",
        tail or "(empty log)",
    ]
    return "\n".join(lines)


def _read_result(job: FlowJob) -> JobReturn | None:
    deadline = time.monotonic() + RESULT_GRACE_SECONDS
    exit_code = job.task.exit_code if job.task is not None else None
    while not job.files.result.exists():
        if exit_code not in (0, 1) or time.monotonic() > deadline:
            return None  # the runner exits 0/1 only after writing the result
        time.sleep(0.05)
    try:
        with job.files.result.open("rb") as stream:
            result = pickle.load(stream)
    except Exception as error:
        log.warning(f"job #{job.num}: cannot read its result {job.files.result}: {error}")
        return None
    return result if isinstance(result, JobReturn) else None


def _save_task_log(job: FlowJob) -> None:
    assert job.task is not None
    try:
        text = str(job.task.logs())
        job.files.task_log.parent.mkdir(parents=True, exist_ok=True)
        mode = "a" if job.attempts else "w"
        with job.files.task_log.open(mode) as stream:
            if job.attempts:
                stream.write(
                    f"\n----- attempt {job.attempts + 1} (task {job.task.task_id}) -----\n"
                )
            stream.write(text)
    except Exception as error:  # the log is a convenience; the outcome matters more
        log.warning(f"job #{job.num}: could not save the task log: {error}")


def copy_task_log(job: FlowJob, output_dir: Path) -> None:
    """Copy the task's captured output into the job's output folder (as ``flow-task.log``)."""
    try:
        if job.files.task_log.is_file() and output_dir.is_dir():
            shutil.copyfile(job.files.task_log, output_task_log(output_dir))
    except OSError as error:
        log.warning(f"job #{job.num}: could not copy the task log to {output_dir}: {error}")


def _cancel_live(
    flow: Flow, live: Sequence[FlowJob], progress: Progress, error: BaseException
) -> None:
    cancelled: list[str] = []
    for job in live:
        if job.task is None:
            continue
        try:
            flow.cancel(job.task.task_id)
            cancelled.append(f"{job.task.task_id} (job #{job.num})")
            job.status_text = "cancelled"
        except Exception as cancel_error:
            progress.message(f"[flow] could not cancel task {job.task.task_id}: {cancel_error}")
    reason = (
        "Interrupted"
        if isinstance(error, KeyboardInterrupt)
        else f"Stopped by {type(error).__name__}"
    )
    if cancelled:
        progress.message(
            f"[flow] {reason}: cancelled {len(cancelled)} live task(s): {', '.join(cancelled)}"
        )
    else:
        progress.message(f"[flow] {reason}: no task was live")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while tasks run, so the same cleanup path runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt(f"signal {signum}")  # "signal" marks SIGTERM (exit 143)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
