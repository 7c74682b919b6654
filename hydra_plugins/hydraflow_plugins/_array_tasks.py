"""Jobs as elements of provider arrays (SLURM job arrays): one submission for a whole sweep.

On a provider that queues arrays itself (``Provider.queues_arrays``: slurm), the first attempts of
jobs prepared together that share an instance type go in as one ``submit_array`` (``max_parallel``
is the array's parallel limit, so the cluster runs as many as the launcher would). Starting such an
attempt only attaches to its element; a retry is a task of its own. Stopping an attempt only notes
it: the next pass (``poll``/``release``) asks the provider for every noted one at once and goes on,
and ``close`` cancels them together with the elements the launch never started (a cancelled queue,
Ctrl-C) and waits, so an exit path is one ``scancel`` for the array.

:class:`ArraySubmission` adds that to a per-task strategy: :class:`ArrayTasks` is
:class:`LocalTasks` (slurm submitted here: the jobs run from the launch dir, which the cluster
shares), :class:`RemoteArrayTasks` is :class:`RemoteTasks` (slurm over ``slurm_login``: specs go up
with the code, each job's output comes home while its element holds).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from hydra_plugins.hydraflow_plugins._jobs import Job, JobContext
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._remote_jobs import RemoteTasks
from hydra_plugins.hydraflow_plugins._strategy import (
    Attempt,
    AttemptEnd,
    LocalTasks,
    PerTaskStrategy,
)

if TYPE_CHECKING:
    from flow_backend import Flow, Task

__all__ = ["ArraySubmission", "ArrayTasks", "RemoteArrayTasks"]


class ArraySubmission(PerTaskStrategy):
    """A per-task strategy whose first attempts are submitted as provider arrays at ``prepare``
    (mixed in before the strategy it extends)."""

    def __init__(
        self, context: JobContext, flow: Flow, options: LauncherOptions, common: dict[str, bytes]
    ) -> None:
        super().__init__(context, flow, options, common)
        self._submitted: dict[int, Task] = {}  # first attempts submitted, not yet started
        self._to_stop: list[Attempt] = []  # stopped, the provider not yet asked
        self._stopping: list[Attempt] = []  # the provider asked; close() waits for them all

    def _prepare(self, jobs: Sequence[Job]) -> None:
        from flow_backend import Task

        super()._prepare(jobs)
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.instance_type, []).append(job)
        provider = self.flow.provider
        for group in groups.values():
            if len(group) < 2:
                continue  # a lone job is started like any other
            configs = [self.task_config(job, 0) for job in group]
            records = provider.submit_array(configs, max_parallel=self.options.max_parallel)
            for job, record in zip(group, records, strict=True):
                self._submitted[job.num] = Task(record, provider)

    def start(self, job: Job, attempt: int) -> Attempt:
        task = self._submitted.pop(job.num, None) if attempt == 0 else None
        if task is None:
            return super().start(job, attempt)
        return Attempt(job, attempt, task)

    def stop(self, attempt: Attempt) -> None:
        """Note it: the next pass or ``close`` stops every noted attempt with one provider call."""
        self._to_stop.append(attempt)

    def poll(self, attempts: Sequence[Attempt]) -> dict[int, AttemptEnd]:
        self._ask_to_stop()
        return super().poll(attempts)

    def release(self, wanted: Collection[str], final: bool) -> None:
        self._ask_to_stop()  # every pass ends here, with or without live attempts
        super().release(wanted, final)

    def _ask_to_stop(self) -> None:
        if self._to_stop:
            self.flow.provider.cancel_many([a.task_id for a in self._to_stop], wait=False)
            self._stopping += self._to_stop
            self._to_stop = []

    def close(self) -> list[str]:
        stopped = super().close()
        # never started by this launch (queued in the provider), or stopped: end them all at once
        attempts = self._stopping + self._to_stop
        ids = [task.task_id for task in self._submitted.values()] + [a.task_id for a in attempts]
        if ids:
            self.flow.provider.cancel_many(ids)
        for attempt in attempts:  # a stopped job keeps its output in its task.log
            self._save_task_log(attempt)
        self._submitted.clear()
        self._to_stop.clear()
        self._stopping.clear()
        return stopped


class ArrayTasks(ArraySubmission, LocalTasks):
    """:class:`LocalTasks` whose first attempts are provider arrays (slurm submitted here)."""


class RemoteArrayTasks(ArraySubmission, RemoteTasks):
    """:class:`RemoteTasks` whose first attempts are provider arrays (slurm over ``slurm_login``)."""
