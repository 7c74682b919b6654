"""SLURM job states as our task states, and what ``squeue`` says about a list of jobs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from flow_backend.models import TaskStatus, utc_now
from flow_backend.providers.slurm.store import SlurmTaskState

__all__ = [
    "SQUEUE_FORMAT",
    "JobInfo",
    "is_over",
    "job_list",
    "parse_squeue",
    "status_of",
    "with_slurm_view",
]

#: ``squeue --format``: job id (``123`` or ``123_4`` for array elements), state, reason, start and
#: end time (local time, ``N/A`` when unknown), first node.
SQUEUE_FORMAT = "%i|%T|%r|%S|%e|%N"

_LIVE = {
    "PENDING": TaskStatus.PENDING,
    "REQUEUED": TaskStatus.PENDING,
    "REQUEUE_HOLD": TaskStatus.PENDING,
    "REQUEUE_FED": TaskStatus.PENDING,
    "RESV_DEL_HOLD": TaskStatus.PENDING,
    "CONFIGURING": TaskStatus.PROVISIONING,
    "RUNNING": TaskStatus.RUNNING,
    "COMPLETING": TaskStatus.RUNNING,
    "SUSPENDED": TaskStatus.RUNNING,
    "STOPPED": TaskStatus.RUNNING,
    "SIGNALING": TaskStatus.RUNNING,
    "STAGE_OUT": TaskStatus.RUNNING,
    "RESIZING": TaskStatus.RUNNING,
}

#: Why a job that SLURM ended did not complete, in words.
_ENDED = {
    "FAILED": "the command failed",
    "CANCELLED": "the job was cancelled in SLURM (scancel)",
    "TIMEOUT": "the job ran past its time limit (--time) and SLURM stopped it",
    "OUT_OF_MEMORY": "the job ran out of memory (raise --mem in slurm_instance_types)",
    "NODE_FAIL": "a node of the job failed",
    "PREEMPTED": "the job was preempted by SLURM",
    "BOOT_FAIL": "a node of the job failed to boot",
    "DEADLINE": "the job reached its deadline",
    "REVOKED": "the job was revoked by a federated cluster",
    "SPECIAL_EXIT": "the job ended in SLURM's special exit state",
}


@dataclass(frozen=True)
class JobInfo:
    """One line of ``squeue``.

    Attributes:
        job_id: ``123``, or ``123_4`` for an array element.
        state: SLURM's state, e.g. ``RUNNING``.
        reason: SLURM's reason (``None``, ``Resources``, ``Priority``, ``TimeLimit``, ...).
        started_at: When it started, if it did.
        ended_at: When it ended, if it did.
        node: Its first node, if it has one.
    """

    job_id: str
    state: str
    reason: str
    started_at: datetime | None
    ended_at: datetime | None
    node: str | None


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text).astimezone(UTC)  # squeue prints local time
    except ValueError:
        return None


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """The jobs of ``squeue --noheader --format=SQUEUE_FORMAT`` by job id."""
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6:
            continue
        job_id, state, reason, start, end, node = parts
        state = state.split()[0].rstrip("+") if state.strip() else "UNKNOWN"
        jobs[job_id] = JobInfo(
            job_id=job_id,
            state=state,
            reason=reason,
            started_at=_time(start),
            ended_at=_time(end) if state not in _LIVE else None,
            node=node if node and node != "(null)" else None,
        )
    return jobs


def status_of(
    info: JobInfo, exit_code: int | None, *, cancel_requested: bool
) -> tuple[TaskStatus, str | None]:
    """Our status and message for a job in ``info`` state whose batch script wrote ``exit_code``.

    A job cancelled through us is ``cancelled``; one cancelled by anyone else (``scancel`` in another
    shell, an administrator) is ``failed``, like every other end but ``COMPLETED``.
    """
    live = _LIVE.get(info.state)
    if live is not None:
        if live is TaskStatus.PENDING and info.reason not in ("None", ""):
            return live, f"SLURM: waiting ({info.reason})"
        return live, None
    if info.state == "COMPLETED" and exit_code in (0, None):
        return TaskStatus.COMPLETED, None
    if info.state == "CANCELLED" and cancel_requested:
        return TaskStatus.CANCELLED, "cancelled"
    why = _ENDED.get(info.state, f"SLURM ended the job in state {info.state}")
    if info.state in ("FAILED", "COMPLETED") and exit_code is not None:
        why = f"the command exited with code {exit_code}"
    reason = f", reason {info.reason}" if info.reason not in ("None", "") else ""
    return TaskStatus.FAILED, f"{why} (SLURM state {info.state}{reason})"


def job_list(job_ids: Iterable[str]) -> list[str]:
    """``scancel``'s arguments for ``job_ids``: a job as it is, the elements of one array as one
    expression (``123_[0-3,7]``), so SLURM cancels them in one request, running or pending."""
    plain: set[str] = set()
    elements: dict[str, set[int]] = {}
    for job_id in job_ids:
        parent, _, index = job_id.partition("_")
        if index.isdigit():
            elements.setdefault(parent, set()).add(int(index))
        else:
            plain.add(job_id)
    arrays = []
    for parent, indices in elements.items():
        ranges: list[list[int]] = []
        for number in sorted(indices):
            if ranges and number == ranges[-1][1] + 1:
                ranges[-1][1] = number
            else:
                ranges.append([number, number])
        text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)
        arrays.append(f"{parent}_{text}" if text.isdigit() else f"{parent}_[{text}]")
    return sorted(plain, key=int) + sorted(arrays, key=lambda a: int(a.split("_")[0]))


def is_over(info: JobInfo) -> bool:
    """Whether SLURM says the job has ended (whatever its exit code)."""
    return status_of(info, None, cancel_requested=False)[0].is_terminal


def with_slurm_view(
    state: SlurmTaskState, info: JobInfo | None, exit_code: int | None
) -> SlurmTaskState:
    """``state`` as SLURM sees the job now (``info``; ``None``: SLURM has forgotten it) and its
    exit-code file says (``exit_code``; ``None``: not written)."""
    record = state.record.model_copy()
    message: str | None
    if info is None:  # SLURM forgot the job: its exit-code file is all there is
        if exit_code is None and state.cancel_requested:
            status, message = TaskStatus.CANCELLED, "cancelled"
        elif exit_code is None:
            status = TaskStatus.FAILED
            message = f"SLURM no longer knows job {state.job_id} and it recorded no exit code"
        else:
            status = TaskStatus.COMPLETED if exit_code == 0 else TaskStatus.FAILED
            message = None if exit_code == 0 else f"the command exited with code {exit_code}"
    else:
        status, message = status_of(info, exit_code, cancel_requested=state.cancel_requested)
        record.started_at = record.started_at or info.started_at
        if info.node:
            record.ssh_destination = info.node
    record.status = status
    record.message = message
    if status.is_terminal:
        record.exit_code = exit_code
        record.ended_at = (info.ended_at if info else None) or utc_now()
        if record.started_at is None:
            record.started_at = record.ended_at if status is not TaskStatus.CANCELLED else None
    return state.model_copy(update={"record": record})
