"""A warm worker's cancel watcher: a cancelled job is interrupted inside its worker, which stays warm.

The launcher writes ``<folder>/job-<n>.cancel`` (its content: why) and then a byte into the
worker's ``<folder>/wake`` FIFO; the worker's watcher thread, asleep in a read of that pipe, looks
for the current order's mark and interrupts the task function (see :class:`CancelWatch`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "INTERRUPT_SIGNAL",
    "WAKE_NAME",
    "CancelWatch",
    "JobInterrupted",
    "cancel_path",
    "poke",
    "wake",
    "wake_path",
]

WAKE_NAME = "wake"
# The worker's interrupt: a real-time signal, which user libraries hardly ever claim (SIGUSR1 and
# SIGUSR2 they do: PyTorch Lightning's SLURM requeue, faulthandler.register, uWSGI); SIGUSR1 where
# the OS has none. A job that installs its own handler for it is not sent it (see CancelWatch).
INTERRUPT_SIGNAL: int = signal.SIGRTMIN + 2 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR1


class JobInterrupted(Exception):
    """Raised inside a running task function whose job the launcher cancelled."""


def cancel_path(folder: Path, seq: int) -> Path:
    """The mark the launcher writes to cancel order ``seq`` (its content: why)."""
    return folder / f"job-{seq}.cancel"


def wake_path(folder: Path) -> Path:
    """The worker's wake-up pipe (a FIFO it makes): the launcher writes to it after a cancel mark."""
    return folder / WAKE_NAME


def wake(folder: Path) -> None:
    """Launcher side: wake the worker's cancel watcher (nothing happens if it is not running)."""
    poke(wake_path(folder))


def poke(pipe: Path) -> None:
    """Write a byte into a FIFO if someone reads it; nothing happens otherwise."""
    try:
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no pipe (yet, or here: a remote worker's launcher is elsewhere) or no reader
        return
    try:
        os.write(fd, b"\n")
    except OSError:  # full: the reader has a wake-up pending already
        pass
    finally:
        os.close(fd)


class CancelWatch:
    """Interrupts the running job of this worker when the launcher cancels it.

    A daemon thread sleeps in a read of the worker's wake-up pipe (no polling: it costs the job
    nothing); woken, it looks for the current order's ``cancel`` mark and sends
    :data:`INTERRUPT_SIGNAL` to the main thread (a real signal wakes a blocking call such as
    ``time.sleep``) — unless the job has installed a handler of its own for that signal, which
    must not run for our purpose: the job then runs on and the launcher stops it with its worker
    after the grace, as for a job that ignores the interrupt. The handler raises
    :class:`JobInterrupted` only while the task function runs (:meth:`interruptible`), so Hydra's
    bookkeeping around it (config, callbacks, result) is never cut in half; a job cancelled before
    its task function starts is stopped as it enters it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seq: int | None = None
        self._reason: str | None = None
        self._armed = False
        self._lock = threading.Lock()
        self._closing = False
        self._previous: Any = signal.SIG_DFL

    def start(self) -> None:
        """Install the signal handler (main thread), make the pipe, start the watcher thread."""
        self._previous = signal.signal(INTERRUPT_SIGNAL, self._on_signal)
        main = threading.main_thread().ident
        assert main is not None
        pipe = wake_path(self.folder)
        pipe.unlink(missing_ok=True)
        os.mkfifo(pipe)
        fd = os.open(pipe, os.O_RDWR)  # a writer of its own: reads wait instead of ending
        threading.Thread(target=self._watch, args=(fd, main), name="cancel", daemon=True).start()

    def close(self) -> None:
        """Stop the watcher thread and remove the pipe (copying the sweep folder must not meet a
        FIFO)."""
        self._closing = True
        wake(self.folder)
        wake_path(self.folder).unlink(missing_ok=True)
        signal.signal(INTERRUPT_SIGNAL, self._previous)

    def begin(self, seq: int) -> None:
        """Order ``seq`` starts running (it may be cancelled already)."""
        signal.signal(INTERRUPT_SIGNAL, self._on_signal)  # an earlier job may have replaced it
        with self._lock:
            self._seq, self._reason, self._armed = seq, self._cancel_reason(seq), False

    def end(self) -> None:
        """The current order has ended: a late cancel mark or signal changes nothing."""
        with self._lock:
            self._seq, self._reason, self._armed = None, None, False

    @property
    def cancelled(self) -> bool:
        """Whether the current order has been cancelled."""
        return self._reason is not None

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Around the task function: a cancel raises :class:`JobInterrupted` in it."""
        with self._lock:
            if self._reason is not None:
                raise JobInterrupted(self._reason)
            self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._armed and self._reason is not None:
            self._armed = False
            raise JobInterrupted(self._reason)

    def _cancel_reason(self, seq: int) -> str | None:
        mark = cancel_path(self.folder, seq)
        if not mark.exists():
            return None
        return mark.read_text(errors="replace").strip() or "cancelled"

    def _watch(self, fd: int, main: int) -> None:
        while os.read(fd, 512) and not self._closing:
            with self._lock:
                if self._seq is None or self._reason is not None:
                    continue
                self._reason = self._cancel_reason(self._seq)
                if self._reason is None:
                    continue
                if signal.getsignal(INTERRUPT_SIGNAL) == self._on_signal:
                    signal.pthread_kill(main, INTERRUPT_SIGNAL)
                else:
                    print(
                        f"hydraflow worker: {self._reason}, but the job installed its own handler "
                        f"for signal {INTERRUPT_SIGNAL} (the worker's interrupt): it is stopped "
                        "with its worker instead",
                        file=sys.stderr,
                        flush=True,
                    )
        os.close(fd)
