"""Turning what a local task left behind (exit codes, stop requests, its spec) into a TaskRecord."""

from __future__ import annotations

import signal

from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.local.processes import TIME_LIMIT_EXIT_CODES
from flow_backend.providers.local.state import FinalState, StopRequest, TaskSpec, utc_now

__all__ = ["conclude", "over_time_limit", "record_of", "time_limit_message"]

#: Slack after the time limit (plus grace) before the provider stops a task the wrapper did not.
_LIMIT_SLACK_SECONDS = 5.0


def _elapsed_seconds(spec: TaskSpec) -> float:
    if spec.started_at is None:
        return 0.0
    return (utc_now() - spec.started_at).total_seconds()


def over_time_limit(spec: TaskSpec, grace_seconds: float) -> bool:
    """Whether a still-running task is past its limit (and the wrapper's own enforcement)."""
    if spec.max_run_time_hours is None:
        return False
    limit = spec.max_run_time_hours * 3600.0
    if spec.timeout_in_wrapper:
        limit += grace_seconds + _LIMIT_SLACK_SECONDS
    return _elapsed_seconds(spec) > limit


def time_limit_message(hours: float) -> str:
    """Why a task that ran too long was stopped."""
    seconds = hours * 3600.0
    shown = f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 3600.0:.2f} h"
    return f"stopped: exceeded max_run_time_hours={hours:g} ({shown})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def conclude(
    spec: TaskSpec,
    codes: list[int | None],
    signals: list[int | None],
    stop: StopRequest | None,
) -> FinalState:
    """The final state of a task whose ranks have all ended."""
    if stop is not None:
        return FinalState(status=stop.status, message=stop.message)
    where = (lambda rank: f" on rank {rank}") if spec.num_instances > 1 else (lambda rank: "")
    limit = spec.max_run_time_hours
    if limit is not None and _elapsed_seconds(spec) >= limit * 3600.0 * 0.99:
        for code in codes:
            if code in TIME_LIMIT_EXIT_CODES:
                return FinalState(
                    status=TaskStatus.FAILED,
                    exit_code=code,
                    message=time_limit_message(limit),
                )
    for rank, (code, killed_by) in enumerate(zip(codes, signals, strict=True)):
        if code is None:
            how = f"killed by {_signal_name(killed_by)}" if killed_by else "killed or crashed"
            return FinalState(
                status=TaskStatus.FAILED,
                message=f"the process ended without an exit code{where(rank)} ({how})",
            )
    for rank, code in enumerate(codes):
        if code:
            return FinalState(
                status=TaskStatus.FAILED,
                exit_code=code,
                message=f"the command exited with code {code}{where(rank)}",
                from_exit_codes_only=True,
            )
    return FinalState(status=TaskStatus.COMPLETED, exit_code=0, from_exit_codes_only=True)


def record_of(spec: TaskSpec, final: FinalState | None, message: str | None = None) -> TaskRecord:
    """The provider-neutral record of a local task."""
    if final is None:
        status = TaskStatus.RUNNING if spec.processes else TaskStatus.PENDING
        notes = [*spec.notes, *([message] if message else [])]
        text = "; ".join(notes) or None
    else:
        status = final.status
        text = final.message
    return TaskRecord(
        task_id=spec.task_id,
        name=spec.name,
        provider="local",
        status=status,
        instance_type=spec.instance_type,
        num_instances=spec.num_instances,
        cost_per_hour=0.0,
        created_at=spec.created_at,
        started_at=spec.started_at,
        ended_at=None if final is None else final.ended_at,
        exit_code=None if final is None else final.exit_code,
        message=text,
        endpoints={f"port-{port}": f"http://127.0.0.1:{port}" for port in spec.ports},
    )
