"""How a job runs: the strategy the scheduler is handed (as httpx hands a client a transport).

A strategy owns a job's preparation (its files, its staged spec), the task fields of an attempt,
the collection of an attempt's outcome and the cleanup; the scheduler only asks it to ``start``,
``poll``, ``stop`` attempts and to ``release`` what the queue no longer needs. The strategies:

- :class:`LocalTasks` — one Flow task (a new Python process) per job attempt, on a provider whose
  tasks share this machine's files (local; slurm submitted here, on the cluster's shared filesystem);
- ``ArrayTasks``, ``RemoteArrayTasks`` (``_array_tasks``) — :class:`LocalTasks` and
  ``RemoteTasks`` whose first attempts go in as provider arrays (one ``sbatch --array`` on slurm);
- ``RemoteTasks`` (``_remote_jobs``) — one remote task per attempt, its output brought home;
- ``LocalWorkers`` (``_workers``) — long-lived worker tasks that run the jobs one after another
  (``reuse_workers=true``, the default, on the local provider);
- ``RemoteWorkers`` (``_remote_workers``) — the same on a provider that reaches its tasks' hosts
  (ssh, mithril): a worker is one remote task (an SSH host slot, a spot bid) fed over SSH.

:func:`choose_strategy` is the one place that looks at the provider and ``reuse_workers``.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hydra.core.utils import JobReturn

from hydra_plugins.hydraflow_plugins._job_runner import job_spec
from hydra_plugins.hydraflow_plugins._jobs import Job, JobContext
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import RUNNER_MODULE, JobFiles, copy_task_log

if TYPE_CHECKING:
    from flow_backend import Flow, Task, TaskConfig
    from flow_backend.providers.base import Provider

__all__ = [
    "LOG_TAIL_LINES",
    "Attempt",
    "AttemptEnd",
    "LocalTasks",
    "PerTaskStrategy",
    "RunStrategy",
    "choose_strategy",
]

LOG_TAIL_LINES = 30
# A task may report its end a moment before its result file is visible (remote copies, NFS).
RESULT_GRACE_SECONDS = 2.0


@dataclass
class Attempt:
    """One attempt of a job, on the task that runs it (its own, or a worker's)."""

    job: Job
    number: int
    task: Task
    started: float = field(default_factory=time.monotonic)
    remote_output: str | None = None  # where a remote job's output folder was fetched from
    worker: str = ""  # the worker running it (``w0``, ...), when a worker does

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def status_text(self) -> str:
        """The task's status; on a worker, which worker (the progress display shows it)."""
        status = self.task.status.value
        return f"{status} on {self.worker}" if self.worker else status

    @property
    def cost_text(self) -> str:
        return self.task.total_cost


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended: its result, or why there is none and the last lines it printed."""

    result: JobReturn | None
    how: str = ""
    tail: str = ""
    log_path: str = ""


class RunStrategy(Protocol):
    """What the scheduler needs from a way of running jobs."""

    provider: str

    def prepare(self, jobs: Sequence[Job]) -> None:
        """Make the jobs ready to start (files, specs); raise a clear error for bad input."""

    def start(self, job: Job, attempt: int) -> Attempt:
        """Start attempt ``attempt`` (0, 1, ...) of ``job``."""

    def poll(self, attempts: Sequence[Attempt]) -> dict[int, AttemptEnd]:
        """Refresh the running attempts; the ended ones by job number."""

    def stop(self, attempt: Attempt) -> None:
        """Stop a running attempt (cancelled by the user, or by an exit path)."""

    def interrupt(self, attempt: Attempt, reason: str) -> bool:
        """Ask a running attempt to stop while its task lives on (a warm worker stays warm).

        ``True``: its end comes through :meth:`poll` (the strategy stops its task if it does not
        end within a grace); ``False``: this strategy cannot, the scheduler calls :meth:`stop`.
        """

    def wait(self, seconds: float) -> None:
        """Pause between polls: ``seconds``, or less once an attempt may have ended."""

    def release(self, wanted: Collection[str], final: bool) -> None:
        """Give back what only jobs of instance types not in ``wanted`` could use.

        ``final``: no more jobs will be submitted (else a sweeper may submit more soon).
        """

    def close(self) -> list[str]:
        """Release everything; the descriptions of tasks that had to be stopped."""


def build_task_config(
    options: LauncherOptions,
    *,
    name: str,
    command: list[str],
    instance_type: str,
    env: dict[str, str],
    remote: bool,
    max_run_time_hours: float | None,
) -> TaskConfig:
    """The TaskConfig of one task of this launch (a job attempt or a worker)."""
    from flow_backend import TaskConfig
    from flow_backend.errors import FlowError

    try:
        return TaskConfig(
            name=name,
            unique_name=False,
            command=command,
            instance_type=instance_type,
            image=options.image,
            env=env,
            working_dir=None if remote else os.getcwd(),
            upload_code=remote,
            code_root=os.getcwd() if remote else None,
            volumes=options.volumes,
            max_price_per_hour=options.max_price_per_hour,
            max_run_time_hours=max_run_time_hours,
            num_instances=options.num_instances,
        )
    except FlowError as error:
        raise FlowLauncherError(f"hydra.launcher: {error}") from None


def read_result(files: JobFiles, exit_code: int | None, wait: bool = True) -> JobReturn | None:
    """The job's pickled ``JobReturn``, if its runner wrote one (it exits 0/1 only after that)."""
    deadline = time.monotonic() + RESULT_GRACE_SECONDS
    while not files.result.exists():
        if not wait or exit_code not in (0, 1) or time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    try:
        with files.result.open("rb") as stream:
            result = pickle.load(stream)
    except Exception:
        return None
    return result if isinstance(result, JobReturn) else None


def log_tail(text: str) -> str:
    """The last ``LOG_TAIL_LINES`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])


def ended_with(attempt: Attempt, result: JobReturn | None, tail: str) -> AttemptEnd:
    """The end of ``attempt``: its result (the task log copied beside it) or why there is none."""
    job = attempt.job
    if result is not None:
        if result.hydra_cfg is not None:
            from pathlib import Path

            copy_task_log(job.num, job.files, Path(str(result.hydra_cfg.hydra.runtime.output_dir)))
        return AttemptEnd(result)
    task = attempt.task
    how = f"task {task.task_id} ended {task.status.value}, exit code {task.exit_code}" + (
        f", {task.message}" if task.message else ""
    )
    return AttemptEnd(None, how, tail, str(job.files.task_log))


class StrategyBase:
    """What every strategy of a launch holds: its jobs' context, the Flow client, the options and
    the payload every job shares."""

    def __init__(
        self, context: JobContext, flow: Flow, options: LauncherOptions, common: dict[str, bytes]
    ) -> None:
        self.context = context
        self.flow = flow
        self.options = options
        self.common = common
        self.provider = flow.settings.provider

    def interrupt(self, attempt: Attempt, reason: str) -> bool:
        return False  # a task of its own is simply stopped

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    def _clear_files(jobs: Sequence[Job]) -> None:
        """Each job's exchange folder exists and holds no stale result."""
        for job in jobs:
            job.files.folder.mkdir(parents=True, exist_ok=True)
            job.files.result.unlink(missing_ok=True)

    def _write_local_specs(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            job.files.spec.write_bytes(local_spec(job, self.common))


class PerTaskStrategy(StrategyBase):
    """One Flow task per job attempt; subclasses give the attempt's command and placement."""

    remote = False

    # -- what subclasses give --------------------------------------------------------------------
    def _prepare(self, jobs: Sequence[Job]) -> None:
        raise NotImplementedError

    def _command(self, job: Job, attempt: int) -> list[str]:
        raise NotImplementedError

    def _attempt_args(self, job: Job, attempt: int) -> list[str]:
        """The job runner's ``--attempt`` argument: the task running this attempt, for the job's
        MLflow callback."""
        return ["--attempt", self.context.task_attempt(job, self.provider, attempt).to_json()]

    def _collect(self, attempt: Attempt) -> None:
        """Per poll, for a running attempt (remote: bring a finished job's output home)."""

    # -- the strategy ----------------------------------------------------------------------------
    def task_config(self, job: Job, attempt: int) -> TaskConfig:
        """The TaskConfig of ``job``'s attempt ``attempt``."""
        return build_task_config(
            self.options,
            name=job.attempt_name(attempt),
            command=self._command(job, attempt),
            instance_type=job.instance_type,
            env=dict(self.options.env),
            remote=self.remote,
            max_run_time_hours=self.options.max_run_time_hours,
        )

    def prepare(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.task_config(job, 0)  # every task config is valid before the first task starts
        self._clear_files(jobs)
        self._prepare(jobs)

    def start(self, job: Job, attempt: int) -> Attempt:
        return Attempt(job, attempt, self.flow.run(self.task_config(job, attempt)))

    def poll(self, attempts: Sequence[Attempt]) -> dict[int, AttemptEnd]:
        self.flow.refresh_all([a.task for a in attempts])
        ended: dict[int, AttemptEnd] = {}
        for attempt in attempts:
            if attempt.task.is_running:
                self._collect(attempt)
            if attempt.task.is_terminal:
                text = self._save_task_log(attempt)
                result = read_result(attempt.job.files, attempt.task.exit_code)
                ended[attempt.job.num] = ended_with(attempt, result, log_tail(text))
        return ended

    def stop(self, attempt: Attempt) -> None:
        attempt.task = self.flow.cancel(attempt.task_id)

    def release(self, wanted: Collection[str], final: bool) -> None:
        return None

    def close(self) -> list[str]:
        return []

    @staticmethod
    def _save_task_log(attempt: Attempt) -> str:
        """Write (retries: append) the task's output to the job's ``task.log``; returns it."""
        files = attempt.job.files
        try:
            text = str(attempt.task.logs())
        except Exception as error:
            return f"(log unavailable: {error})"
        try:
            files.task_log.parent.mkdir(parents=True, exist_ok=True)
            with files.task_log.open("a" if attempt.number else "w") as stream:
                if attempt.number:
                    stream.write(
                        f"\n----- attempt {attempt.number + 1} (task {attempt.task_id}) -----\n"
                    )
                stream.write(text)
        except OSError:
            pass  # the log is a convenience; the outcome matters more
        return text


class LocalTasks(PerTaskStrategy):
    """Every attempt is a new local process running the job runner on the job's spec file."""

    def _prepare(self, jobs: Sequence[Job]) -> None:
        self._write_local_specs(jobs)

    def stop(self, attempt: Attempt) -> None:
        super().stop(attempt)
        self._save_task_log(attempt)  # a stopped job keeps its output (a local file: cheap)

    def _command(self, job: Job, attempt: int) -> list[str]:
        python = self.options.python or sys.executable
        return [python, "-m", RUNNER_MODULE, str(job.files.spec), *self._attempt_args(job, attempt)]


def local_spec(job: Job, common: dict[str, bytes]) -> bytes:
    """The spec of a job that runs on this machine (the launcher's cwd and ``sys.path``)."""
    return job_spec(
        job.num,
        list(job.overrides),
        job.task_name,
        common,
        cwd=os.getcwd(),
        sys_path=[p for p in sys.path if p],
    )


def uses_workers(provider: Provider, options: LauncherOptions) -> bool:
    """Whether this launch runs its jobs on warm workers (``reuse_workers``, where a provider can
    feed them: this machine's files, or a task host it reaches; a cluster queue runs arrays)."""
    if not options.reuse_workers:
        return False
    if provider.shares_files:
        return not provider.queues_arrays
    return provider.reaches_tasks


def choose_strategy(context: JobContext, flow: Flow, options: LauncherOptions) -> RunStrategy:
    """The strategy of this launch: the provider and ``reuse_workers`` decide, once."""
    common = context.common_payload(job_stores=not flow.provider.shares_files)
    workers = uses_workers(flow.provider, options)
    if not flow.provider.shares_files:
        if workers:
            from hydra_plugins.hydraflow_plugins._remote_workers import RemoteWorkers

            return RemoteWorkers(context, flow, options, common)
        if flow.provider.queues_arrays:
            from hydra_plugins.hydraflow_plugins._array_tasks import RemoteArrayTasks

            return RemoteArrayTasks(context, flow, options, common)
        from hydra_plugins.hydraflow_plugins._remote_jobs import RemoteTasks

        return RemoteTasks(context, flow, options, common)
    if workers:
        from hydra_plugins.hydraflow_plugins._workers import LocalWorkers

        return LocalWorkers(context, flow, options, common)
    if flow.provider.queues_arrays:
        from hydra_plugins.hydraflow_plugins._array_tasks import ArrayTasks

        return ArrayTasks(context, flow, options, common)
    return LocalTasks(context, flow, options, common)
