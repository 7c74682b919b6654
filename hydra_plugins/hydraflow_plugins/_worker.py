"""A warm worker, on the task side: one Flow task that runs a sweep's jobs one after another.

``python -m hydra_plugins.hydraflow_plugins._worker <folder> [<launcher pid>]`` waits for orders in
its folder (the launcher writes them; see ``_workers``)::

    <folder>/job-<n>.json    order n: the job's spec, its log file, its attempt (header, task), its env
    <folder>/job-<n>.done    written by the worker once order n has ended (its result is written)
    <folder>/job-<n>.cancel  order n is cancelled (its content: why): the worker interrupts the job
    <folder>/wake            a FIFO the worker makes and removes; the launcher writes to it after a
                             cancel mark, which wakes the worker's cancel watcher
    <folder>/stop            the launcher no longer needs this worker: it exits
    <folder>/../ended        a FIFO the launcher makes (local workers): a worker writes to it after
                             each done mark, which wakes the launcher

On a remote host (``_remote_workers``) the folder and every path of an order are relative to the
uploaded code (the worker's working folder); an order then also names the attempt's ``result`` file
and ``sweep_dir``, as a remote task's runner is given them, and ``--idle SECONDS`` ends a worker
that gets no order for that long (its launcher, on another machine, cannot be watched by pid).

Each order runs through the same :func:`~hydra_plugins.hydraflow_plugins._job_runner.run` as a task of
its own would, so a job gets the same Hydra state (restored from its spec), output folder, result,
callbacks and MLflow run. Between jobs the worker puts back what a job may change in the process:
environment variables, working folder, ``sys.path``, ``sys.argv``, and the job's stdout/stderr go to
its own log file. What stays (and is the point): imported modules — hydra, mlflow, the user's
script, imported once. A job that kills the process takes only itself down: the launcher fails it
with its log tail and starts another worker for the jobs that remain.

A cancelled job stops alone too: a watcher thread, woken through the ``wake`` pipe, sees its
``cancel`` mark and interrupts the main thread (``_cancel_watch``: the handler raises
``JobInterrupted`` inside the task function, which
Hydra's ``run_job`` records as the job's failure: its MLflow run ends ``FAILED`` with the reason), and
the worker stays warm for the next job. A job that ignores the interrupt is stopped with its worker
by the launcher after a grace period.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra_plugins.hydraflow_plugins import _job_runner
from hydra_plugins.hydraflow_plugins._cancel_watch import CancelWatch, poke
from hydra_plugins.hydraflow_plugins._compose_cache import ComposeCache
from hydra_plugins.hydraflow_plugins._job_runner import WarmState

__all__ = [
    "ECHO_MARK",
    "STOP_NAME",
    "done_path",
    "ended_pipe_path",
    "order_path",
    "serve",
]

POLL_SECONDS = 0.005
FAST_POLL_SECONDS = 0.0005  # just after a job: the next order usually follows within ms
FAST_POLL_WINDOW = 0.25
LAUNCHER_CHECK_SECONDS = 1.0
STOP_NAME = "stop"
ECHO_MARK = "----- hydraflow worker: job log "  # then the log's path (echoed orders only)
TEE_DRAIN_SECONDS = 5.0
ENDED_NAME = "ended"


def order_path(folder: Path, seq: int) -> Path:
    """Where order ``seq`` of a worker is written."""
    return folder / f"job-{seq}.json"


def done_path(folder: Path, seq: int) -> Path:
    """The mark a worker writes once order ``seq`` has ended (its content: the exit status)."""
    return folder / f"job-{seq}.done"


def ended_pipe_path(folder: Path) -> Path:
    """The launcher's pipe beside its workers' folders (a FIFO it makes): a worker writes to it
    after each done mark, which wakes a launcher waiting for one (local workers only)."""
    return folder.parent / ENDED_NAME


def serve(folder: Path, launcher_pid: int | None = None, idle_seconds: float | None = None) -> int:
    """Run orders until told to stop (or the launcher is gone, or idle too long); exit status."""
    folder.mkdir(parents=True, exist_ok=True)  # a remote worker's folder comes with its 1st order
    _leave_inherited_connections()
    gc.freeze()  # what it inherited (a fork of its launcher) or imported: see _settle_heap
    watch = CancelWatch(folder)
    watch.start()
    try:
        return _serve(folder, watch, WarmState(ComposeCache()), launcher_pid, idle_seconds)
    finally:
        watch.close()


def _serve(
    folder: Path,
    watch: CancelWatch,
    warm: WarmState,
    launcher_pid: int | None,
    idle_seconds: float | None,
) -> int:
    seq = 0
    checked = idle_since = time.monotonic()
    while True:
        order = order_path(folder, seq)
        if order.exists():
            watch.begin(seq)
            try:
                status = run_order(json.loads(order.read_text()), watch, warm)
            finally:
                watch.end()
            _job_runner.write_atomic(done_path(folder, seq), str(status).encode())
            poke(ended_pipe_path(folder))
            if seq == 0:
                _settle_heap()
            warm.parts.refill()  # the next job's spec parts, while the launcher hands it out
            seq += 1
            idle_since = time.monotonic()
            continue
        if (folder / STOP_NAME).exists():
            return 0
        if idle_seconds is not None and time.monotonic() - idle_since > idle_seconds:
            print(f"worker: no order for {idle_seconds:g} s; exiting", flush=True)
            return 0
        if launcher_pid is not None and time.monotonic() - checked > LAUNCHER_CHECK_SECONDS:
            checked = time.monotonic()
            if not _alive(launcher_pid):
                print(f"worker: launcher {launcher_pid} is gone; exiting", flush=True)
                return 0
        recent = time.monotonic() - idle_since < FAST_POLL_WINDOW
        time.sleep(FAST_POLL_SECONDS if recent else POLL_SECONDS)


def _settle_heap() -> None:
    """After the first job: collect its garbage and freeze what is left (``gc.freeze``).

    Python's full collections go over every object the process tracks; in a worker those are
    mostly what it inherited from its launcher (hydra, mlflow, optuna, polars: some 300,000
    objects) or imported for its first job, and each one paused a job's start or end for 0.2-0.3
    s, every 10 jobs or so (22 ms a job on average on the quiet machine). Frozen, they are left
    out of every collection; the jobs' own garbage is collected as before (5 ms a job). What the
    first job left behind that becomes garbage later is kept: once, for the worker's life.
    Done while the launcher hands out the next job (it has the done mark already).
    """
    gc.collect()
    gc.freeze()


_INHERITED: list[Any] = []  # connections of the process this one was forked from: never touched


def _leave_inherited_connections() -> None:
    """A worker forked from its launcher has the launcher's SQLAlchemy pools (MLflow's store) and
    their open connections: two processes must not use one (sqlite forbids it). SQLAlchemy's
    recipe for ``os.fork``: a connection checked out in another process than the one that made
    it is set aside, unclosed, and the pool opens a new one. Nothing to do in a new interpreter.
    """
    if "sqlalchemy.pool" not in sys.modules:
        return
    from sqlalchemy import event, exc
    from sqlalchemy.pool import Pool

    def connect(dbapi_connection: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            _INHERITED.append(dbapi_connection)
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError("a connection of the launcher's process")

    event.listen(Pool, "connect", connect)
    event.listen(Pool, "checkout", checkout)


def run_order(
    order: dict[str, Any], watch: CancelWatch | None = None, warm: WarmState | None = None
) -> int:
    """Run one job as its own task would; put the process back as it was afterwards.

    ``warm``: what the worker keeps from its earlier jobs (``_job_runner.WarmState``).
    """
    env, cwd, path, argv = dict(os.environ), os.getcwd(), list(sys.path), list(sys.argv)
    echo = bool(order.get("echo"))  # remote: the job's output also goes to the worker's own log
    if echo:
        print(f"{ECHO_MARK}{order['log']}", flush=True)
    with _output_to(Path(order["log"]), order.get("header", ""), echo):
        os.environ.update(order.get("env", {}))
        try:
            guard = watch.interruptible if watch is not None else None
            result = order.get("result")  # a remote attempt's own result file and sweep dir
            return _job_runner.run(
                Path(order["spec"]),
                Path(result) if result else None,
                order.get("sweep_dir"),
                guard=guard,
                attempt=order.get("attempt"),  # the task running it (TaskAttempt JSON)
                warm=warm,
            )
        except (Exception, SystemExit):  # the job produced no result; the worker goes on
            traceback.print_exc()
            return 2
        finally:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            sys.path[:] = path
            sys.argv[:] = argv


@contextmanager
def _output_to(log: Path, header: str, echo: bool = False) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``log``.

    ``echo``: through ``tee``, also to the worker's own output — a remote worker's task log,
    which its provider keeps even when the job takes the worker (and its instance) down.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    log.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if header else os.O_TRUNC)
    fd = os.open(log, flags, 0o644)
    if header:
        os.write(fd, header.encode())
    tee = None
    if echo:
        import subprocess

        os.close(fd)
        tee = subprocess.Popen(["tee", "-a", str(log)], stdin=subprocess.PIPE)
        assert tee.stdin is not None
        fd = os.dup(tee.stdin.fileno())
        tee.stdin.close()
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        if tee is not None:  # the log is whole once tee has drained the pipe
            try:
                tee.wait(timeout=TEE_DRAIN_SECONDS)
            except Exception:  # a process the job left behind holds the pipe open
                tee.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m ..._worker FOLDER [LAUNCHER_PID] [--idle SECONDS]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    idle = None
    if "--idle" in args[:-1]:
        at = args.index("--idle")
        idle = float(args[at + 1])
        del args[at : at + 2]
    if len(args) not in (1, 2):
        print(
            "usage: python -m hydra_plugins.hydraflow_plugins._worker FOLDER [LAUNCHER_PID] "
            "[--idle SECONDS]"
        )
        return 2
    return serve(Path(args[0]), int(args[1]) if len(args) == 2 else None, idle)


if __name__ == "__main__":
    _job_runner.exit_now(main())
