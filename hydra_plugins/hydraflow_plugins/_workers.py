"""Warm workers on the local provider: a few long-lived tasks run all the jobs of a launch.

A worker (:mod:`~hydra_plugins.hydraflow_plugins._worker`) is one Flow task that imports hydra,
mlflow and the user's script once and then runs the jobs it is handed one after another, each as its
own task would run it (same spec, result, output folder, log, MLflow run). The scheduler keeps at
most ``max_parallel`` jobs live, so there are at most that many busy workers; a job is handed to an
idle worker of its instance type, else to a new one. A worker goes as soon as the queue holds no job
it could run (at once when no more jobs can come, after ``IDLE_GRACE_SECONDS`` in an open session),
and on every exit path.

A job that kills its worker (a signal, ``os._exit``, out of memory) or outlives
``max_run_time_hours`` ends without a result — the scheduler retries or fails it with its log tail —
and the worker is gone; the next job that needs one starts a new worker. A cancelled job is
interrupted inside its worker, which stays warm; one that has not stopped ``CANCEL_GRACE_SECONDS``
later is stopped with its worker.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hydra_plugins.hydraflow_plugins._cancel_watch import cancel_path, wake, wake_path
from hydra_plugins.hydraflow_plugins._job_runner import write_atomic
from hydra_plugins.hydraflow_plugins._jobs import Job, JobContext
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import FILES_DIR
from hydra_plugins.hydraflow_plugins._strategy import (
    Attempt,
    AttemptEnd,
    StrategyBase,
    build_task_config,
    ended_with,
    log_tail,
    read_result,
)
from hydra_plugins.hydraflow_plugins._worker import (
    STOP_NAME,
    done_path,
    ended_pipe_path,
    order_path,
)
from hydra_plugins.hydraflow_plugins._worker_pool import (
    WORKER_MODULE,
    collect_ends,
    idle_unwanted,
    overdue,
)

if TYPE_CHECKING:
    from flow_backend import Flow, Task, TaskConfig

__all__ = ["LocalWorkers"]

IDLE_GRACE_SECONDS = 2.0  # in an open session, a sweeper's next job usually comes sooner
STOP_WAIT_SECONDS = 3.0  # how long close() waits for stopped workers before cancelling them
STOPPED_POLL_SECONDS = 0.005  # how often close() looks whether stopped workers have exited
CANCEL_GRACE_SECONDS = 3.0  # a cancelled job not stopped by then is stopped with its worker


@dataclass
class Worker:
    """One worker task and the job it runs now."""

    name: str
    folder: Path
    instance_type: str
    task: Task
    orders: int = 0
    attempt: Attempt | None = None
    idle_since: float = field(default_factory=time.monotonic)
    cancelled_at: float | None = None  # when its current job was cancelled
    stopping: bool = False  # told to exit once its current job has ended: it takes no order


class LocalWorkers(StrategyBase):
    """The worker-based strategy on the local provider (``hydra.launcher.reuse_workers=true``)."""

    def __init__(
        self, context: JobContext, flow: Flow, options: LauncherOptions, common: dict[str, bytes]
    ) -> None:
        super().__init__(context, flow, options, common)
        self.workers: list[Worker] = []
        self._leaving: list[Worker] = []  # told to stop, not yet seen ended
        self._started = 0
        self._ended: EndedPipe | None = None  # made with the first worker

    # -- the strategy ----------------------------------------------------------------------------
    def prepare(self, jobs: Sequence[Job]) -> None:
        for job in jobs:  # every task config is valid before the first task starts
            self._worker_config(job, "w", checked_run_time=self.options.max_run_time_hours)
        self._clear_files(jobs)
        self._write_local_specs(jobs)

    def start(self, job: Job, attempt: int) -> Attempt:
        worker = next(
            (
                w
                for w in self.workers
                if w.attempt is None and not w.stopping and w.instance_type == job.instance_type
            ),
            None,
        ) or self._new_worker(job)
        header = ""
        if attempt:
            header = f"\n----- attempt {attempt + 1} (worker task {worker.task.task_id}) -----\n"
        order = {
            "spec": str(job.files.spec),
            "log": str(job.files.task_log),
            "header": header,
            # hydra.launcher.env is in the worker's own environment (never in this file)
            "attempt": self.context.task_attempt(job, self.provider, attempt).to_json(),
        }
        write_atomic(order_path(worker.folder, worker.orders), json.dumps(order).encode())
        worker.orders += 1
        worker.cancelled_at = None
        worker.attempt = Attempt(job, attempt, worker.task, worker=worker.name)
        return worker.attempt

    def poll(self, attempts: Sequence[Attempt]) -> dict[int, AttemptEnd]:
        self.flow.refresh_all([w.task for w in self.workers + self._leaving])
        self._leaving = [w for w in self._leaving if not w.task.is_terminal]
        return collect_ends(self.workers, self._attempt_end, self._drop)

    def stop(self, attempt: Attempt) -> None:
        for worker in self.workers:
            if worker.attempt is attempt:
                self._drop(worker)
                attempt.task = self.flow.cancel(worker.task.task_id)
                return

    def interrupt(self, attempt: Attempt, reason: str) -> bool:
        """The worker interrupts the job and stays warm (see ``_cancel_watch.CancelWatch``)."""
        for worker in self.workers:
            if worker.attempt is attempt:
                write_atomic(cancel_path(worker.folder, worker.orders - 1), reason.encode())
                wake(worker.folder)
                worker.cancelled_at = time.monotonic()
                return True
        return False

    def wait(self, seconds: float) -> None:
        """Sleep until a busy worker marks its job done, or ``seconds`` (a worker that dies writes
        no mark): woken by the worker through the ``ended`` pipe, no polling."""
        if self._ended is not None:
            self._ended.drain()  # what woke an earlier wait
        marks = [done_path(w.folder, w.orders - 1) for w in self.workers if w.attempt is not None]
        if any(mark.exists() for mark in marks):
            return
        if self._ended is not None:
            self._ended.wait(seconds)
        else:
            time.sleep(seconds)

    def release(self, wanted: Collection[str], final: bool) -> None:
        """Idle workers the queue does not need go; when no more jobs can come, busy ones are told
        now to exit after their job (their exit overlaps the launcher collecting it)."""
        for worker in idle_unwanted(self.workers, wanted, final, IDLE_GRACE_SECONDS):
            self._retire(worker)
        if not final:
            return
        for worker in self.workers:
            if not worker.stopping and worker.instance_type not in wanted:
                (worker.folder / STOP_NAME).touch()
                worker.stopping = True

    def close(self) -> list[str]:
        """Stop every worker: idle ones exit by themselves, the rest are cancelled."""
        cancelled = []
        for worker in list(self.workers):
            if worker.attempt is None:
                self._retire(worker)
            else:
                self._drop(worker)
                self.flow.cancel(worker.task.task_id)
                cancelled.append(worker.task.task_id)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while self._leaving and time.monotonic() < deadline:
            time.sleep(STOPPED_POLL_SECONDS)  # a stopped worker exits within milliseconds
            self.flow.refresh_all([w.task for w in self._leaving])
            self._leaving = [w for w in self._leaving if not w.task.is_terminal]
        for worker in self._leaving:
            self.flow.cancel(worker.task.task_id)
            self._drop(worker)
            cancelled.append(worker.task.task_id)
        self._leaving = []
        if self._ended is not None:
            self._ended.close()
            self._ended = None
        return cancelled

    # -- inside ----------------------------------------------------------------------------------
    def _attempt_end(self, worker: Worker, attempt: Attempt) -> AttemptEnd | None:
        """How the worker's current job ended, or ``None`` while it runs."""
        files = attempt.job.files
        done = done_path(worker.folder, worker.orders - 1)
        if done.exists():
            result = read_result(files, None, wait=False)
            if result is not None:
                return ended_with(attempt, result, "")
            status = done.read_text()
            how = f"worker task {worker.task.task_id} could not run it (exit status {status})"
            return AttemptEnd(None, how, _tail(files.task_log), str(files.task_log))
        if worker.task.is_terminal:
            # it may have finished just before the worker died: its mark tells
            if done.exists():
                return self._attempt_end(worker, attempt)
            if files.task_log.exists():
                tail, where = _tail(files.task_log), str(files.task_log)
            else:  # the worker died before it took the job: its own output says why
                tail, where = _task_tail(worker.task), f"worker task {worker.task.task_id}"
            end = ended_with(attempt, None, tail)
            return AttemptEnd(None, f"worker {end.how}", tail, where)
        why = overdue(
            worker, attempt.started, CANCEL_GRACE_SECONDS, self.options.max_run_time_hours
        )
        if why is None:
            return None
        self.flow.cancel(worker.task.task_id)
        return AttemptEnd(None, why, _tail(files.task_log), str(files.task_log))

    def _new_worker(self, job: Job) -> Worker:
        name = f"w{self._started}"
        folder = self.context.sweep_dir / FILES_DIR / "workers" / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():  # a former launch of this sweep dir
            stale.unlink()
        if self._ended is None:
            self._ended = EndedPipe(ended_pipe_path(folder))
        task = self.flow.run(self._worker_config(job, name, folder))
        self._started += 1
        worker = Worker(name, folder, job.instance_type, task)
        self.workers.append(worker)
        return worker

    def _worker_config(
        self,
        job: Job,
        name: str,
        folder: Path | None = None,
        checked_run_time: float | None = None,
    ) -> TaskConfig:
        """A worker's TaskConfig; it has no time limit (``checked_run_time``: only validate one).

        ``max_run_time_hours`` is per job and enforced here: a worker lives through many jobs.
        """
        command = [self.options.python or sys.executable, "-m", WORKER_MODULE]
        command += [str(folder or self.context.sweep_dir), str(os.getpid())]
        config = build_task_config(
            self.options,
            name=f"hf-{self.context.sweep_id}-{name}",
            command=command,
            instance_type=job.instance_type,
            env=dict(self.options.env),
            remote=False,
            max_run_time_hours=checked_run_time,
        )
        return config.model_copy(update={"fork": self._forks(job)})

    def _forks(self, job: Job) -> bool:
        """Whether the worker may start as a fork of this process (``TaskConfig.fork``): it then
        starts with hydra, mlflow and the MLflow store this process has loaded already.

        Not when ``hydra.launcher.python`` names an interpreter (the way to ask for a new one),
        ``hydra.launcher.env`` sets variables (some act only when an interpreter or a library
        starts) or the job wants GPUs (CUDA must not be initialised before a fork).
        """
        return self.options.python is None and not self.options.env and not job.gpus

    def _retire(self, worker: Worker) -> None:
        (worker.folder / STOP_NAME).touch()
        self.workers.remove(worker)
        self._leaving.append(worker)

    def _drop(self, worker: Worker) -> None:
        """Forget a worker that is stopped (or has died): it cannot remove its own pipe."""
        if worker in self.workers:
            self.workers.remove(worker)
        wake_path(worker.folder).unlink(missing_ok=True)


class EndedPipe:
    """The FIFO the workers write to after each done mark (``_worker.ended_pipe_path``): the
    launcher waits for a job's end in ``select`` on it instead of looking for marks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer of its own: never at EOF

    def wait(self, seconds: float) -> None:
        """Until a worker writes (or has written since the last drain), at most ``seconds``."""
        select.select([self.fd], [], [], max(0.0, seconds))

    def drain(self) -> None:
        """Forget the wake-ups written so far (their marks are about to be read)."""
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Close and remove it (copying the sweep folder must not meet a FIFO)."""
        os.close(self.fd)
        self.path.unlink(missing_ok=True)


def _task_tail(task: Task) -> str:
    try:
        return log_tail(str(task.logs()))
    except Exception as error:
        return f"(log unavailable: {error})"


def _tail(log: Path) -> str:
    try:
        return log_tail(log.read_text(errors="replace"))
    except OSError as error:
        return f"(log unavailable: {error})"
