"""Warm workers on a remote provider (ssh, mithril): a few remote tasks run all the jobs of a launch.

A worker is one Flow task (an SSH host slot, a Mithril spot bid) running
:mod:`~hydra_plugins.hydraflow_plugins._worker` in the uploaded code, in the job environment of
``_remote_env``: it is provisioned, uploaded and prepared once, then runs the jobs it is handed one
after another. The launcher reaches it through the provider's pooled connection to its host
(:meth:`flow_backend.providers.base.Provider.task_host`)::

    .hydraflow/<sweep id>/workers/<launch>-w<k>/    the worker's folder (relative to its code)
        spec-<n>.pkl, job-<n>.json                  order n: written in one command with its spec
        job-<n>.done                                written by the worker when order n has ended
    .hydraflow/<sweep id>/<job num>/a<attempt>/     the attempt's result.pkl, out/ and task.log

Per poll: the workers' task states (the provider's own refresh), then ONE command per host listing
the done marks of its busy workers; a finished attempt's folder comes home in one download, its
result and output folder as :class:`~hydra_plugins.hydraflow_plugins._remote_jobs.RemoteTasks`
would bring them (same ``JobReturn``, ``flow-task.log``, MLflow runs imported). A job that kills
its worker, a worker preempted or lost, ends its job without a result (retried up to
``max_retries``, as a task of its own would be) and the worker is gone; a worker the queue no
longer needs is cancelled at once (nothing idles billing), and every worker on every exit path.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from hydra.core.utils import JobReturn

from hydra_plugins.hydraflow_plugins._jobs import Job, JobContext
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import TASK_LOG_NAME
from hydra_plugins.hydraflow_plugins._remote import (
    HOLD_SECONDS,
    STAGE_DIR,
    RemoteLayout,
    keep_result,
)
from hydra_plugins.hydraflow_plugins._remote_jobs import RemoteTasks
from hydra_plugins.hydraflow_plugins._remote_orders import (
    RemoteWorker,
    download_attempt,
    finished,
    interrupt,
    job_output,
    send_order,
    wait_for_marks,
)
from hydra_plugins.hydraflow_plugins._strategy import (
    Attempt,
    AttemptEnd,
    StrategyBase,
    build_task_config,
    ended_with,
    log_tail,
)
from hydra_plugins.hydraflow_plugins._worker_pool import (
    WORKER_MODULE,
    collect_ends,
    idle_unwanted,
    overdue,
)

if TYPE_CHECKING:
    from flow_backend import Flow, TaskConfig

__all__ = ["RemoteWorkers"]

log = logging.getLogger(__name__)

IDLE_GRACE_SECONDS = 10.0  # in an open session, a sweeper's next job usually comes sooner
CANCEL_GRACE_SECONDS = 10.0  # a cancelled job not stopped by then is stopped with its worker


class RemoteWorkers(StrategyBase):
    """The worker-based strategy on ssh and mithril (``hydra.launcher.reuse_workers=true``)."""

    def __init__(
        self, context: JobContext, flow: Flow, options: LauncherOptions, common: dict[str, bytes]
    ) -> None:
        super().__init__(context, flow, options, common)
        # the job environment, composed specs, output folders and MLflow import of remote jobs
        self.jobs = RemoteTasks(context, flow, options, common)
        self.workers: list[RemoteWorker] = []
        self._started = 0
        self._launch = secrets.token_hex(3)  # a former launch's folders are never read
        self._launch_dir = Path.cwd()  # the uploaded code
        self._unwritten: dict[int, Job] = {}  # jobs whose spec is not written yet

    # -- the strategy ----------------------------------------------------------------------------
    def prepare(self, jobs: Sequence[Job]) -> None:
        """Check every task config; plan the job environment. Specs travel with the orders, so
        each is composed when first needed or while the first workers provision (:meth:`wait`)."""
        for job in jobs:  # every task config is valid before the first task starts
            self._worker_config(job, "w")
        self._clear_files(jobs)
        self.jobs.check_uploaded(self._launch_dir, self.jobs.plan_env(self._launch_dir))
        self._unwritten.update((job.num, job) for job in jobs)

    def wait(self, seconds: float) -> None:
        """Compose queued jobs' specs while waiting (the first workers provision meanwhile),
        then wait for a busy worker's done mark (on its host) or the end of ``seconds``."""
        deadline = time.monotonic() + seconds
        while self._unwritten and time.monotonic() < deadline:
            self._spec(next(iter(self._unwritten.values())))
        wait_for_marks(self.workers, deadline - time.monotonic())

    def start(self, job: Job, attempt: int) -> Attempt:
        """Hand the job to an idle worker (its order goes out now), else to a new worker (its
        order goes out once it runs: :meth:`poll`)."""
        idle = [
            w for w in self.workers if w.attempt is None and w.instance_type == job.instance_type
        ]
        idle.sort(key=lambda w: w.host is None)  # a running worker first
        worker = idle[0] if idle else self._new_worker(job)
        worker.attempt = Attempt(job, attempt, worker.task, worker=worker.name)
        worker.delivered_at = worker.cancelled_at = None
        if worker.host is not None:
            self._spec(job)
            self._deliver(worker)
        return worker.attempt

    def poll(self, attempts: Sequence[Attempt]) -> dict[int, AttemptEnd]:
        from flow_backend.providers.ssh.hosts import each

        self.flow.refresh_all([w.task for w in self.workers])
        waiting = [
            w
            for w in self.workers
            if w.attempt is not None and w.delivered_at is None and w.task.is_running
        ]
        for worker in waiting:  # composing touches Hydra's global state: not in threads
            assert worker.attempt is not None
            self._spec(worker.attempt.job)
        each(waiting, self._deliver)
        done_names = finished(self.workers)
        done = [w for w in self.workers if w.name in done_names]
        incoming = {w.name: path for w, path in zip(done, each(done, self._download), strict=True)}

        def end_of(worker: RemoteWorker, attempt: Attempt) -> AttemptEnd | None:
            done_now = worker.name in done_names
            return self._attempt_end(worker, attempt, done_now, incoming.get(worker.name))

        return collect_ends(self.workers, end_of, self._drop)

    def stop(self, attempt: Attempt) -> None:
        for worker in self.workers:
            if worker.attempt is attempt:
                self._drop(worker)
                return

    def interrupt(self, attempt: Attempt, reason: str) -> bool:
        """The worker interrupts the job and stays warm (see ``_cancel_watch.CancelWatch``)."""
        from flow_backend.errors import FlowError

        for worker in self.workers:
            if worker.attempt is attempt and worker.delivered_at is not None:
                try:
                    interrupt(worker, reason)
                except FlowError:
                    return False  # the scheduler stops it with its worker
                worker.cancelled_at = time.monotonic()
                return True
        return False

    def release(self, wanted: Collection[str], final: bool) -> None:
        self._rehome()
        for worker in idle_unwanted(self._unstarted_first(), wanted, final, IDLE_GRACE_SECONDS):
            self._drop(worker)

    def close(self) -> list[str]:
        """Cancel every worker (nothing may stay billing); remove the staged files."""
        busy = [w.task.task_id for w in self.workers if w.attempt is not None]
        try:
            for worker in self._unstarted_first():
                self._drop(worker)
        finally:
            self.jobs.close()
        return busy

    # -- feeding a worker ------------------------------------------------------------------------
    def _deliver(self, worker: RemoteWorker) -> None:
        """Write the current attempt's order (with its spec) into the worker's folder."""
        from flow_backend.errors import FlowError

        attempt = worker.attempt
        assert attempt is not None
        job, number = attempt.job, attempt.number
        layout = RemoteLayout(self.context.sweep_id, job.num)
        order = {
            "spec": f"{worker.folder}/spec-{worker.orders}.pkl",
            "result": layout.result(number),
            "sweep_dir": layout.sweep_dir(number),
            "log": str(layout.attempt(number) / TASK_LOG_NAME),
            "echo": True,  # its output also in the worker's log, which outlives a crash
            # hydra.launcher.env is in the worker's own environment (never in a file)
            "attempt": self.context.task_attempt(job, self.provider, number).to_json(),
        }
        try:
            if worker.host is None:
                worker.host = self.flow.provider.task_host(worker.task.task_id)
            if worker.host is None:
                return  # not reachable yet: the next poll tries again
            if not send_order(worker, str(layout.attempt(number)), self._spec(job), order):
                return
        except FlowError as error:  # booting sshd, a network blip: the next poll tries again
            log.debug("worker %s: order not written yet: %s", worker.name, error)
            return
        worker.orders += 1
        worker.delivered_at = time.monotonic()

    def _rehome(self) -> None:
        """Move jobs waiting for a worker still provisioning to idle running ones (the worker
        left idle is released once the queue has no job for it: a bid or a host slot saved)."""
        idle = [w for w in self.workers if w.attempt is None and w.host and w.task.is_running]
        for worker in self.workers:
            attempt = worker.attempt
            task = worker.task
            if attempt is None or worker.host or task.is_running or task.is_terminal:
                continue
            other = next((w for w in idle if w.instance_type == worker.instance_type), None)
            if other is None:
                continue
            idle.remove(other)
            attempt.task, attempt.worker = other.task, other.name
            other.attempt, other.delivered_at, other.cancelled_at = attempt, None, None
            worker.attempt, worker.idle_since = None, time.monotonic()
            self._spec(attempt.job)
            self._deliver(other)

    def _spec(self, job: Job) -> bytes:
        """The job's spec (``.flow/<num>/spec.pkl``), composed and written the first time."""
        if self._unwritten.pop(job.num, None) is not None or not job.files.spec.is_file():
            self.jobs.write_spec(job, job.files.spec)
        return job.files.spec.read_bytes()

    # -- how an attempt ended --------------------------------------------------------------------
    def _attempt_end(
        self, worker: RemoteWorker, attempt: Attempt, done: bool, incoming: Path | None
    ) -> AttemptEnd | None:
        """How the worker's current job ended (``done``: its mark is there, its folder came to
        ``incoming`` unless unreachable), or ``None`` while it runs."""
        files = attempt.job.files
        if done:
            fetched = self._bring_home(attempt, incoming) if incoming else None
            if fetched is None:
                return None if not worker.task.is_terminal else self._lost(worker, attempt)
            if fetched.result is not None:
                return ended_with(attempt, fetched.result, "")
            how = f"worker task {worker.task.task_id} could not run it"
            return AttemptEnd(None, how, fetched.tail, str(files.task_log))
        if worker.task.is_terminal:
            return self._lost(worker, attempt)
        hours = self.options.max_run_time_hours
        why = overdue(worker, worker.delivered_at, CANCEL_GRACE_SECONDS, hours)
        if why is None:
            return None
        tail = self._job_tail(worker, attempt)  # while its host still answers
        self._drop(worker)
        return AttemptEnd(None, why, tail, str(files.task_log))

    def _lost(self, worker: RemoteWorker, attempt: Attempt) -> AttemptEnd:
        """The worker ended (crashed, preempted, cancelled) before its job came home."""
        if worker.delivered_at is not None:
            tail, where = self._job_tail(worker, attempt), str(attempt.job.files.task_log)
        else:  # it ended before it took the job: its own output says why
            tail, where = _task_tail(worker), f"worker task {worker.task.task_id}"
        end = ended_with(attempt, None, tail)
        return AttemptEnd(None, f"worker {end.how}", tail, where)

    def _trial(self, attempt: Attempt) -> str:
        return str(RemoteLayout(self.context.sweep_id, attempt.job.num).attempt(attempt.number))

    def _download(self, worker: RemoteWorker) -> Path | None:
        attempt = worker.attempt
        assert attempt is not None
        incoming = attempt.job.files.folder / f"incoming-a{attempt.number}"
        return download_attempt(worker, self._trial(attempt), incoming)

    def _bring_home(self, attempt: Attempt, incoming: Path) -> _Fetched | None:
        """Put a downloaded attempt folder in place: output folder, result, log, MLflow runs."""
        import cloudpickle

        job = attempt.job
        layout = RemoteLayout(self.context.sweep_id, job.num)
        result_file = incoming / PurePosixPath(layout.result(attempt.number)).name
        try:
            if not result_file.is_file():
                return _Fetched(None, self._keep_log(attempt, incoming / TASK_LOG_NAME))
            job_return = cloudpickle.loads(result_file.read_bytes())
            remote_output = str(job_return.hydra_cfg.hydra.runtime.output_dir)
            local_output = self.jobs.outputs[job.num]
            inside = remote_output.partition(f"{self._trial(attempt)}/")[2]
            if local_output.exists():
                shutil.rmtree(local_output)
            local_output.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(incoming / inside, local_output)
            tail = self._keep_log(attempt, incoming / TASK_LOG_NAME)
        except Exception as error:  # a bad pickle, a full disk: the next poll tries again
            log.warning(f"job #{job.num}: could not bring its output home yet: {error}")
            return None
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        keep_result(job_return, local_output, job.files.result)
        attempt.remote_output = remote_output
        self.jobs.import_runs(attempt, local_output)
        return _Fetched(job_return, tail)

    def _job_tail(self, worker: RemoteWorker, attempt: Attempt) -> str:
        """The tail of the job's log, which is kept as its ``task.log``."""
        incoming = attempt.job.files.folder / f"incoming-a{attempt.number}.log"
        text = job_output(worker, f"{self._trial(attempt)}/{TASK_LOG_NAME}", incoming)
        if text is None:
            return f"(the job's log is unreachable)\n{_task_tail(worker)}"
        incoming.write_text(text)
        try:
            return self._keep_log(attempt, incoming)
        finally:
            incoming.unlink(missing_ok=True)

    @staticmethod
    def _keep_log(attempt: Attempt, source: Path) -> str:
        """Save the attempt's log as the job's ``task.log`` (a retry appends); its tail."""
        text = source.read_text(errors="replace") if source.is_file() else ""
        target = attempt.job.files.task_log
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a" if attempt.number else "w") as stream:
            if attempt.number:
                stream.write(
                    f"\n----- attempt {attempt.number + 1} (worker {attempt.task_id}) -----\n"
                )
            stream.write(text)
        return log_tail(text)

    # -- the workers' tasks ----------------------------------------------------------------------
    def _new_worker(self, job: Job) -> RemoteWorker:
        name = f"w{self._started}"
        folder = f"{STAGE_DIR}/{self.context.sweep_id}/workers/{self._launch}-{name}"
        task = self.flow.run(self._worker_config(job, name, folder))
        self._started += 1
        worker = RemoteWorker(name, folder, job.instance_type, task)
        self.workers.append(worker)
        return worker

    def _worker_config(self, job: Job, name: str, folder: str = ".") -> TaskConfig:
        """A worker's TaskConfig; no time limit (``max_run_time_hours`` is per job, kept here)."""
        command = self.jobs.python_command(
            ["-m", WORKER_MODULE, folder, "--idle", str(HOLD_SECONDS)]
        )
        return build_task_config(
            self.options,
            name=f"hf-{self.context.sweep_id}-{name}",
            command=command,
            instance_type=job.instance_type,
            env=dict(self.options.env),
            remote=True,
            max_run_time_hours=None,
        )

    def _unstarted_first(self) -> list[RemoteWorker]:
        """The workers, those still waiting for a host or a bid first: a slot the others free
        must not start a worker that is about to be cancelled too."""
        return sorted(self.workers, key=lambda w: w.host is not None)

    def _drop(self, worker: RemoteWorker) -> None:
        """Forget the worker and cancel its task (its bid) unless it has ended."""
        if worker in self.workers:
            self.workers.remove(worker)
        if not worker.task.is_terminal:
            worker.task = self.flow.cancel(worker.task.task_id)
        if worker.attempt is not None:
            worker.attempt.task = worker.task


@dataclass(frozen=True)
class _Fetched:
    result: JobReturn | None
    tail: str


def _task_tail(worker: RemoteWorker) -> str:
    try:
        return log_tail(str(worker.task.logs()))
    except Exception as error:
        return f"(log unavailable: {error})"
