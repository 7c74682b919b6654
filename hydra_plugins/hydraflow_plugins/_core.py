"""The ``flow`` launcher's ``launch``: plan the batch, then run it through a :class:`JobSession`.

``dry_run=true`` prints the plan and launches nothing; ``max_total_cost`` refuses a plan whose worst
case is above it. Otherwise the batch is "open a session, submit all, gather all, return in job
order" (see ``_session``, ``_scheduler`` and ``_strategy`` for how the jobs run).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hydra.core.utils import JobReturn

from hydra_plugins.hydraflow_plugins._options import FlowLauncherError
from hydra_plugins.hydraflow_plugins._plan import (
    check_budget,
    check_local_python,
    check_volumes,
    format_plan,
    make_plan,
)
from hydra_plugins.hydraflow_plugins._session import FlowJobSession
from hydra_plugins.hydraflow_plugins._strategy import uses_workers

if TYPE_CHECKING:
    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher

log = logging.getLogger(__name__)


def launch(
    launcher: FlowLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Launch a batch whose jobs are numbered from ``initial_job_idx``; results in job order."""
    numbered = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    return launch_numbered(launcher, numbered)


def launch_numbered(
    launcher: FlowLauncher, numbered: Sequence[tuple[int, list[str]]]
) -> list[JobReturn]:
    """Launch jobs with explicit numbers (the flow sweeper skips finished ones); results in order."""
    if not numbered:
        return []
    from flow_backend.errors import FlowError

    try:
        return _launch(launcher, numbered)
    except FlowError as error:  # a provider's own message names the setting and the fix
        provider = launcher.params.get("provider") or "(Flow settings)"
        raise FlowLauncherError(f"hydra.launcher.provider={provider}: {error}") from None


def _launch(launcher: FlowLauncher, numbered: Sequence[tuple[int, list[str]]]) -> list[JobReturn]:
    with FlowJobSession(launcher, expected_jobs=len(numbered)) as session:
        context, options = session.context, session.options
        jobs = [context.job(num, overrides) for num, overrides in numbered]
        rows = make_plan(
            [(job.num, job.overrides, job.instance_type) for job in jobs],
            options,
            context.price_of,
        )
        check_local_python(session.flow.provider, options)
        if options.dry_run:
            check_volumes(session.flow.provider, options, session.slots)
            workers = session.slots if uses_workers(session.flow.provider, options) else None
            print(format_plan(rows, session.provider, workers), flush=True)
            check_budget(rows, options)
            return [context.dry_run_return(job) for job in jobs]
        check_budget(rows, options)
        log.info(
            f"Flow launcher ({session.provider}) is launching {len(jobs)} job(s) of sweep "
            f"{context.sweep_id}, sweep output dir : {context.config.hydra.sweep.dir}"
        )
        for job in jobs:
            log.info(f"\t#{job.num} : {job.overrides_text}")
        session.submit_jobs(jobs)
        session.no_more_jobs()
        results: dict[int, JobReturn] = {}
        while session.active:
            results.update(session.outcomes())
    return [results[num] for num, _ in numbered]


__all__ = ["launch", "launch_numbered"]
