"""A warm worker's cancel watcher, in this process: a cancel interrupts only the job it names.

The launcher cancels order ``n`` of a worker by writing ``job-<n>.cancel`` and waking the worker's
pipe; the job is interrupted inside its task function (even in a blocking sleep), a cancel that
comes before the task function stops it as it enters, and a late wake-up never reaches the next job.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hydra_plugins.hydraflow_plugins._cancel_watch import (
    INTERRUPT_SIGNAL,
    CancelWatch,
    JobInterrupted,
    cancel_path,
    wake,
    wake_path,
)


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[CancelWatch]:
    started = CancelWatch(tmp_path)
    started.start()
    yield started
    started.close()
    assert not wake_path(tmp_path).exists()  # no FIFO left in the sweep folder


def _cancel(folder: Path, seq: int, after: float = 0.0) -> None:
    def later() -> None:
        time.sleep(after)
        cancel_path(folder, seq).write_text(f"Job #{seq} (x=1) cancelled")
        wake(folder)

    threading.Thread(target=later).start()


def test_a_cancel_interrupts_a_sleeping_task_function_and_not_the_next_job(
    watch: CancelWatch, tmp_path: Path
) -> None:
    watch.begin(0)
    _cancel(tmp_path, 0, after=0.2)
    began = time.monotonic()
    with pytest.raises(JobInterrupted, match=r"Job #0 \(x=1\) cancelled"), watch.interruptible():
        time.sleep(30)
    assert time.monotonic() - began < 10
    watch.end()
    watch.begin(1)
    wake(tmp_path)  # a late wake-up: job 1 has no cancel mark
    with watch.interruptible():
        time.sleep(0.3)  # runs to its end
    watch.end()


def test_a_job_cancelled_before_its_task_function_stops_as_it_enters(
    watch: CancelWatch, tmp_path: Path
) -> None:
    cancel_path(tmp_path, 0).write_text("Job #0 (x=1) cancelled")
    watch.begin(0)  # cancelled while the worker was still picking it up
    with pytest.raises(JobInterrupted), watch.interruptible():
        pytest.fail("the task function ran")
    watch.end()
    watch.begin(1)
    _cancel(tmp_path, 1)  # cancelled while Hydra composes its config (nothing to interrupt)
    deadline = time.monotonic() + 10
    while not watch.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(JobInterrupted), watch.interruptible():
        pytest.fail("the task function ran")
    watch.end()


def test_a_job_that_took_over_the_interrupt_signal_is_not_sent_it(
    watch: CancelWatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    received: list[int] = []
    watch.begin(0)
    with watch.interruptible():
        signal.signal(INTERRUPT_SIGNAL, lambda number, frame: received.append(number))
        _cancel(tmp_path, 0)
        deadline = time.monotonic() + 10
        while not watch.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the job runs on: its own handler is not run for our purpose
    watch.end()
    assert received == []
    assert "installed its own handler" in capfd.readouterr().err
    watch.begin(1)  # the next job has the worker's interrupt again
    _cancel(tmp_path, 1, after=0.1)
    with pytest.raises(JobInterrupted), watch.interruptible():
        time.sleep(30)
    watch.end()
