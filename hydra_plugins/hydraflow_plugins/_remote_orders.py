"""Talking to remote warm workers over SSH: their orders, their marks, what comes home.

Everything goes through the provider's pooled connection to the worker's host
(:class:`~flow_backend.remote.TaskHost`), as bash scripts on stdin (nothing in an argv). Paths are
relative to the worker's working folder (its uploaded code), absolute where several workers of one
host are asked at once. The worker side is :mod:`~hydra_plugins.hydraflow_plugins._worker`.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import time
from base64 import encodebytes
from dataclasses import dataclass, field
from gzip import compress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_plugins.hydraflow_plugins._cancel_watch import WAKE_NAME
from hydra_plugins.hydraflow_plugins._strategy import Attempt
from hydra_plugins.hydraflow_plugins._worker import ECHO_MARK

if TYPE_CHECKING:
    from flow_backend import Task
    from flow_backend.remote import TaskHost

__all__ = [
    "RemoteWorker",
    "download_attempt",
    "finished",
    "interrupt",
    "job_output",
    "send_order",
    "wait_for_marks",
]

log = logging.getLogger(__name__)

MARK_LOOK_SECONDS = 0.05


@dataclass
class RemoteWorker:
    """One worker task, where it runs once known, and the job it runs now."""

    name: str
    folder: str  # relative to the worker's working folder (the uploaded code)
    instance_type: str
    task: Task
    host: TaskHost | None = None
    orders: int = 0  # orders written so far
    attempt: Attempt | None = None
    delivered_at: float | None = None  # when the current attempt's order was written
    cancelled_at: float | None = None  # when the current attempt was interrupted
    idle_since: float = field(default_factory=time.monotonic)

    def mark(self, suffix: str) -> str:
        """A file of the order written last (``done``, ``cancel``), relative to the workdir."""
        return f"{self.folder}/job-{self.orders - 1}.{suffix}"


def send_order(worker: RemoteWorker, trial: str, spec: bytes, order: dict[str, Any]) -> bool:
    """Write order number ``worker.orders`` (with its spec, gzipped) into the worker's folder.

    The attempt's folder ``trial`` is emptied first (a former launch's result is never read).
    Returns whether it was written; raises ``FlowError`` when the host cannot be reached.
    """
    assert worker.host is not None
    seq, folder, place = worker.orders, shlex.quote(worker.folder), shlex.quote(trial)
    script = (
        f"set -eo pipefail\nmkdir -p {folder}\nrm -rf {place}\nmkdir -p {place}\n"
        f"base64 -d <<'HF_SPEC' | gzip -dc > {shlex.quote(order['spec'])}\n"
        f"{encodebytes(compress(spec, compresslevel=1)).decode()}HF_SPEC\n"
        f"cat > {folder}/job-{seq}.json.tmp <<'HF_ORDER'\n{json.dumps(order)}\nHF_ORDER\n"
        f"mv -f {folder}/job-{seq}.json.tmp {folder}/job-{seq}.json\n"
    )
    result = worker.host.run(script)
    if result.exit_code != 0:
        log.warning(f"worker {worker.name}: could not write its order: {result.error_text}")
        return False
    return True


def interrupt(worker: RemoteWorker, reason: str) -> None:
    """Cancel the worker's current job in place: its cancel mark, then a byte on its wake pipe."""
    assert worker.host is not None
    mark = shlex.quote(worker.mark("cancel"))
    wake = shlex.quote(f"{worker.folder}/{WAKE_NAME}")
    worker.host.run(
        f"printf %s {shlex.quote(reason)} > {mark}.tmp && mv -f {mark}.tmp {mark}\n"
        f"[ -p {wake} ] && {{ printf x >&3; }} 3<>{wake}\ntrue\n"  # O_RDWR: never blocks
    )


def finished(workers: list[RemoteWorker]) -> set[str]:
    """Names of the busy workers whose order has its done mark: one command per host."""
    from flow_backend.errors import FlowError
    from flow_backend.providers.ssh.hosts import each

    groups = _busy_by_host(workers)

    def ask(group: list[RemoteWorker]) -> set[str]:
        marks = {w.host.path(w.mark("done")): w.name for w in group if w.host}
        listed = " ".join(shlex.quote(mark) for mark in marks)
        host = group[0].host
        assert host is not None
        try:
            result = host.run(f'for f in {listed}; do [ -e "$f" ] && echo "$f"; done; true\n')
        except FlowError as error:  # unreachable this poll: the next one asks again
            log.debug("could not list the done marks on %s: %s", host.destination, error)
            return set()
        return {marks[line] for line in result.text.splitlines() if line in marks}

    return set().union(*each(list(groups.values()), ask))


def wait_for_marks(workers: list[RemoteWorker], seconds: float) -> None:
    """Return once a busy worker's done mark appears, or after ``seconds``: one command per
    host that looks every ``MARK_LOOK_SECONDS`` there (a finished job is noticed at once,
    whatever the poll interval)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
    from concurrent.futures import wait as first_of

    groups = _busy_by_host(workers)
    if not groups or seconds <= 0:
        time.sleep(max(0.0, seconds))
        return
    looks = max(1, int(seconds / MARK_LOOK_SECONDS))

    def watch(group: list[RemoteWorker]) -> bool:
        host = group[0].host
        assert host is not None
        listed = " ".join(shlex.quote(host.path(w.mark("done"))) for w in group if w.host)
        script = (
            f'for i in $(seq {looks}); do for f in {listed}; do [ -e "$f" ] && exit 0; done; '
            f"sleep {MARK_LOOK_SECONDS}; done; exit 0\n"
        )
        try:
            host.run(script, timeout=seconds + 30)
        except Exception:  # unreachable (or closed on the way out): the next poll says more
            return False
        return True

    deadline = time.monotonic() + seconds
    pool = ThreadPoolExecutor(max_workers=len(groups))
    try:
        futures = [pool.submit(watch, group) for group in groups.values()]
        done, _ = first_of(futures, timeout=seconds + 1, return_when=FIRST_COMPLETED)
        if not any(future.result() for future in done):  # no host answered: wait it out here
            time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        pool.shutdown(wait=False)  # the other hosts' looks end by themselves at the deadline


def _busy_by_host(workers: list[RemoteWorker]) -> dict[str, list[RemoteWorker]]:
    """The workers running a delivered order, by host."""
    groups: dict[str, list[RemoteWorker]] = {}
    for worker in workers:
        if worker.attempt is not None and worker.delivered_at is not None and worker.host:
            groups.setdefault(worker.host.destination, []).append(worker)
    return groups


def download_attempt(worker: RemoteWorker, trial: str, incoming: Path) -> Path | None:
    """The attempt's folder, downloaded whole to ``incoming`` (``None``: unreachable now)."""
    from flow_backend.errors import FlowError
    from flow_backend.remote import download

    assert worker.host is not None
    shutil.rmtree(incoming, ignore_errors=True)
    try:
        return download(worker.host.conn, worker.host.path(trial), incoming)
    except FlowError as error:
        log.warning(f"worker {worker.name}: could not bring its job's output home yet: {error}")
        shutil.rmtree(incoming, ignore_errors=True)
        return None


def job_output(worker: RemoteWorker, log_path: str, incoming: Path) -> str | None:
    """The job's log: downloaded while the host answers, else its copy at the end of the worker
    task's own log (which its provider keeps after the instance is gone); ``None``: neither."""
    from flow_backend.errors import FlowError
    from flow_backend.remote import download

    if worker.host is not None:
        try:
            download(worker.host.conn, worker.host.path(log_path), incoming)
            return incoming.read_text(errors="replace")
        except (FlowError, OSError):
            pass
        finally:
            incoming.unlink(missing_ok=True)
    try:
        text = str(worker.task.logs())
    except Exception:
        return None
    start = text.rfind(f"{ECHO_MARK}{log_path}\n")
    if start < 0:
        return None
    return text[start:].split("\n", 1)[1]
