"""Crash repair: a sweep whose tasks are gone without an outcome ends its RUNNING runs ``KILLED``.

A sweep's runs stay ``RUNNING`` when nobody is left to end them: the launcher was killed
(``kill -9``, a closed laptop, a reboot), its tasks were cancelled with ``flow cancel --sweep``, a
job's process was killed from outside, or a remote instance was lost. Repair finds such runs and
ends them ``KILLED`` (MLflow's own status for this), with the end time of the moment it found them
and the tag ``hydraflow.end_reason``. Their metrics, params and artifacts stay.

Liveness comes only from what can be asked, never from a guess by time:

- the launching process (the parent run's ``hydraflow.launcher`` tag: host, boot, pid, start): while
  it lives, the sweep is left alone entirely — it ends its own runs;
- each job's task (``flow.provider`` + ``flow.task_id``), as its provider reports it through
  :mod:`flow_backend`; a job that ran inside the launcher (basic/joblib launcher) lives with it;
- the sweep's tasks (every task whose name contains the sweep id, as ``flow cancel --sweep``).

A child run ends when its own witness is gone; the parent ends when the launcher is gone and no task
of the sweep is live. Anything that cannot be asked (a launcher on another host, a task the provider
does not know, a provider that cannot be reached) counts as alive: repair never ends a run that may
still be running.

Who repairs: ``hydraflow repair`` (and ``hydraflow sweeps``, which shows what it would do), the MLflow
callback at the start of every sweep on the same store, and ``flow cancel --sweep`` (through the
``flow_backend.sweep_cancelled`` entry point, so ``flow_backend`` never imports MLflow).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from hydraflow import _mlflow_store as store
from hydraflow._process import Liveness, process_liveness
from hydraflow.conventions import (
    TAG_END_REASON,
    TAG_LAUNCHER,
    TAG_PARENT_RUN_ID,
    TAG_PROVIDER,
    TAG_ROLE,
    TAG_SWEEP_ID,
    TAG_TASK_ID,
)
from hydraflow.core.errors import HydraflowError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from flow_backend import Flow
    from flow_backend.models import TaskRecord

__all__ = ["SweepReport", "after_flow_cancel", "inspect_sweeps", "repair_store"]

log = logging.getLogger(__name__)

_NO_PROVIDER = ("", "none")
_SWEEP_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class SweepReport:
    """One sweep as found in the store, and what repair did (or would do) to it."""

    sweep_id: str
    experiment: str
    parent: Run | None
    jobs: list[Run] = field(default_factory=list)
    state: str = "running"  # finished | failed | killed | running | orphaned | unknown | dead
    note: str = ""
    to_end: dict[str, str] = field(default_factory=dict)  # run id -> end reason
    ended: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Job runs by status (the newest run of each job number); for an ended sweep whose job
        runs were not read, the parent's summary."""
        summary = self.parent.data.metrics if self.parent is not None else {}
        if not self.jobs and "jobs" in summary:
            names = {"FINISHED": "completed", "FAILED": "failed", "KILLED": "killed"}
            return {status: int(summary[key]) for status, key in names.items() if summary.get(key)}
        counts: dict[str, int] = {}
        for run in self.jobs:
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        return counts


def _experiments(client: MlflowClient) -> dict[str, str]:
    names: dict[str, str] = {}
    token: str | None = None
    while True:
        page = store.retry_busy(
            partial(client.search_experiments, max_results=1000, page_token=token)
        )
        names.update({e.experiment_id: e.name for e in page})
        token = page.token
        if not token:
            return names


def _group(client: MlflowClient, runs: Sequence[Run], names: dict[str, str]) -> list[SweepReport]:
    """Group sweep and job runs by sweep id; fetch a RUNNING job's ended parent for its tags."""
    reports: dict[str, SweepReport] = {}
    unique = {run.info.run_id: run for run in runs}.values()
    for run in sorted(unique, key=lambda r: r.info.start_time or 0):
        sweep_id = run.data.tags.get(TAG_SWEEP_ID)
        role = run.data.tags.get(TAG_ROLE)
        if not sweep_id or role not in ("sweep", "job"):
            continue
        report = reports.setdefault(
            sweep_id, SweepReport(sweep_id, names.get(run.info.experiment_id, "?"), None)
        )
        if role == "sweep":
            report.parent = run
        else:
            report.jobs.append(run)
    for report in reports.values():
        if report.parent is None and report.jobs:
            parent_id = report.jobs[0].data.tags.get(TAG_PARENT_RUN_ID)
            if parent_id:
                try:
                    report.parent = store.retry_busy(partial(client.get_run, parent_id))
                except Exception:  # deleted: the jobs' own witnesses still speak
                    report.parent = None
        newest: dict[str, Run] = {}
        for run in report.jobs:
            newest[run.data.tags.get("hydraflow.job_num", run.info.run_id)] = run
        report.jobs = list(newest.values())
    return list(reports.values())


class _Tasks:
    """The tasks of the sweeps being judged, as their providers report them (one client each)."""

    def __init__(self) -> None:
        self._flows: dict[str, Flow | None] = {}
        self._live: dict[str, list[TaskRecord] | None] = {}

    def flow(self, provider: str) -> Flow | None:
        if provider not in self._flows:
            from flow_backend import Flow
            from flow_backend.errors import FlowError

            try:
                self._flows[provider] = Flow(provider=provider)
            except FlowError as error:
                log.warning("repair: cannot ask provider %r about tasks: %s", provider, error)
                self._flows[provider] = None
        return self._flows[provider]

    def record(self, provider: str, task_id: str) -> TaskRecord | None:
        """The task's record; ``None`` when it cannot be known (then it may still be running)."""
        flow = self.flow(provider)
        if flow is None:
            return None
        try:
            return flow.provider.get(task_id)
        except Exception as error:
            log.info("repair: task %s of provider %s: %s", task_id, provider, error)
            return None

    def live(self, provider: str, sweep_id: str) -> list[TaskRecord] | None:
        """Live tasks whose name contains ``sweep_id``; ``None`` when the provider cannot say."""
        flow = self.flow(provider)
        if flow is None:
            return None
        if provider not in self._live:
            try:
                self._live[provider] = [t.record for t in flow.list_tasks(active_only=True)]
            except Exception as error:
                log.warning("repair: cannot list the tasks of provider %r: %s", provider, error)
                self._live[provider] = None
        found = self._live[provider]
        return None if found is None else [t for t in found if sweep_id in t.name]

    def close(self) -> None:
        for flow in self._flows.values():
            if flow is not None:
                flow.close()


def _job_verdict(
    run: Run, launcher: Liveness, launcher_text: str, tasks: _Tasks
) -> tuple[str | None, str | None]:
    """(why the RUNNING job run ends, why it cannot be known); both ``None``: it is alive."""
    provider = run.data.tags.get(TAG_PROVIDER, "")
    task_id = run.data.tags.get(TAG_TASK_ID, "")
    if provider in _NO_PROVIDER:  # the job ran in the launcher's process (or its pool)
        if launcher is Liveness.GONE:
            return f"{launcher_text} is gone; the job ran in it", None
        return None, f"job run {run.info.run_id[:8]}: its launcher cannot be asked (another host)"
    record = tasks.record(provider, task_id)
    if record is None:
        return None, f"task {task_id} unknown to provider {provider}"
    if not record.status.is_terminal:
        return None, None
    exit_text = "" if record.exit_code is None else f", exit code {record.exit_code}"
    return (
        f"task {task_id} ({provider}) ended {record.status.value}{exit_text} "
        "before the job recorded an outcome"
    ), None


def _judge(report: SweepReport, tasks: _Tasks, force: bool = False) -> None:
    """Decide the sweep's state and which of its RUNNING runs end, and why.

    ``force`` (one sweep, asked by the user) also ends what cannot be asked; never what is alive.
    """
    parent = report.parent
    running = [run for run in report.jobs if run.info.status == "RUNNING"]
    parent_running = parent is not None and parent.info.status == "RUNNING"
    if not running and not parent_running:
        report.state = (parent.info.status if parent is not None else "FINISHED").lower()
        return
    identity = parent.data.tags.get(TAG_LAUNCHER) if parent is not None else None
    launcher = process_liveness(identity)
    if launcher is Liveness.ALIVE:
        report.state, report.note = "running", "launcher alive"
        return
    launcher_text = "the launcher" if not identity else f"the launcher ({_who(identity)})"
    forced = "ended by `hydraflow repair --force`: "
    unknown: list[str] = []
    jobs_left = 0
    for run in running:
        reason, doubt = _job_verdict(run, launcher, launcher_text, tasks)
        if doubt is not None and force:
            reason = forced + doubt
        elif doubt is not None:
            unknown.append(doubt)
        if reason is not None:
            report.to_end[run.info.run_id] = reason
        else:
            jobs_left += 1
    live: list[str] = []
    providers = {r.data.tags.get(TAG_PROVIDER, "") for r in [*report.jobs, parent] if r is not None}
    for provider in sorted(providers - set(_NO_PROVIDER)):
        found = tasks.live(provider, report.sweep_id)
        if found is None:
            unknown.append(f"provider {provider} did not answer")
        else:
            live.extend(t.task_id for t in found)
    launcher_gone = launcher is Liveness.GONE or force
    if parent_running and launcher_gone and not (live or jobs_left or (unknown and not force)):
        assert parent is not None
        reason = f"{launcher_text} is gone and no task of sweep {report.sweep_id} is live"
        report.to_end[parent.info.run_id] = (
            reason if launcher is Liveness.GONE else forced + "its launcher cannot be asked"
        )
    if live:
        report.state = "orphaned"
        report.note = (
            f"{launcher_text} is gone; {len(live)} task(s) still live "
            f"(`flow cancel --sweep {report.sweep_id}` stops them)"
        )
    elif unknown:
        report.state = "unknown"
        report.note = "; ".join(unknown) + (
            f" (if you know they are gone: `hydraflow repair --sweep {report.sweep_id} --force`)"
        )
    else:
        report.state = "dead" if report.to_end else "running"
        report.note = next(iter(report.to_end.values()), "")


def _who(identity: str) -> str:
    host, _boot, pid, _tick = identity.split()
    return f"pid {pid} on {host}"


def inspect_sweeps(
    client: MlflowClient,
    sweep_id: str | None = None,
    *,
    running_only: bool = False,
    experiment_ids: list[str] | None = None,
    force: bool = False,
) -> list[SweepReport]:
    """Every sweep of the store (or one), judged: what is running, what is dead and why.

    With ``running_only``, only sweeps that still have RUNNING runs (what repair looks at).
    """
    if sweep_id is not None and not _SWEEP_ID.fullmatch(sweep_id):
        raise HydraflowError(
            f"--sweep {sweep_id!r}: a sweep id is letters, digits, '-' or '_' (e.g. 3f9a1c2e, "
            "the hydraflow.sweep_id tag); `hydraflow sweeps` lists them"
        )
    names = _experiments(client)
    ids = experiment_ids or list(names)
    if not ids:
        return []
    if sweep_id is not None:
        runs = store.search_all(client, ids, f"tags.`{TAG_SWEEP_ID}` = '{sweep_id}'")
        if running_only and not any(run.info.status == "RUNNING" for run in runs):
            runs = []
    elif running_only:
        runs = store.search_all(client, ids, "attributes.status = 'RUNNING'")
    else:  # every parent; the job runs only of sweeps with RUNNING runs (a store may hold 10^4)
        runs = store.search_all(client, ids, f"tags.`{TAG_ROLE}` = 'sweep'")
        running = store.search_all(client, ids, "attributes.status = 'RUNNING'")
        for live_id in sorted({run.data.tags.get(TAG_SWEEP_ID, "") for run in running} - {""}):
            runs.extend(store.search_all(client, ids, f"tags.`{TAG_SWEEP_ID}` = '{live_id}'"))
    reports = _group(client, runs, names)
    tasks = _Tasks()
    try:
        for report in reports:
            _judge(report, tasks, force)
    finally:
        tasks.close()
    return sorted(
        reports,
        key=lambda r: r.parent.info.start_time if r.parent else 0,
        reverse=True,
    )


def repair_store(
    tracking_uri: str,
    sweep_id: str | None = None,
    *,
    dry_run: bool = False,
    experiment_ids: list[str] | None = None,
    force: bool = False,
) -> list[SweepReport]:
    """End ``KILLED`` the RUNNING runs of sweeps whose tasks are gone; returns the judged sweeps.

    The parent ends last, with the sweep summary (``jobs``, ``completed``, ``failed``, ``killed``).
    """
    client = store.client_for(tracking_uri)
    if force and sweep_id is None:
        raise HydraflowError("--force needs --sweep ID: it is a decision about one sweep")
    reports = inspect_sweeps(
        client, sweep_id, running_only=True, experiment_ids=experiment_ids, force=force
    )
    for report in reports:
        if dry_run or not report.to_end:
            continue
        parent_id = report.parent.info.run_id if report.parent else None
        for run_id, reason in report.to_end.items():
            if run_id == parent_id:
                continue
            store.end_run(client, run_id, "KILLED", reason)
            report.ended += 1
        if parent_id in report.to_end and report.parent is not None:
            summary, cost_tag = store.sweep_summary(
                client, report.parent.info.experiment_id, parent_id
            )
            store.log_batches(client, parent_id, tags=cost_tag, metrics=summary)
            store.end_run(client, parent_id, "KILLED", report.to_end[parent_id])
            report.ended += 1
        report.state = "killed" if parent_id in report.to_end else report.state
        log.info("repair: sweep %s: ended %d run(s) KILLED", report.sweep_id, report.ended)
    return reports


def after_flow_cancel(sweep_id: str) -> Iterator[str]:
    """The ``flow_backend.sweep_cancelled`` hook: repair the sweep in the store of this directory.

    The store is ``MLFLOW_TRACKING_URI``, else ``./mlflow.db`` (run it where the sweep was launched).
    Yields the lines ``flow cancel --sweep`` prints.
    """
    from hydraflow.core.errors import StoreNotFoundError
    from hydraflow.core.store import open_store

    try:
        uri = open_store().uri
    except StoreNotFoundError as error:
        yield (
            f"hydraflow: MLflow runs not checked: {error} If the sweep logged elsewhere, run "
            f"`hydraflow repair --sweep {sweep_id} --tracking-uri URI`"
        )
        return
    for report in repair_store(uri, sweep_id):
        if report.ended:
            reason = report.note or next(iter(report.to_end.values()), "")
            yield (
                f"hydraflow: sweep {sweep_id}: {report.ended} MLflow run(s) ended KILLED "
                f"({TAG_END_REASON}: {reason})"
            )
        elif report.note:
            yield f"hydraflow: sweep {sweep_id}: runs left RUNNING: {report.note}"
