"""Progress of a launch: a live table on a terminal, plain lines otherwise, and a summary table."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import IO, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

from hydra_plugins.hydraflow_plugins._plan import gpus_text

__all__ = ["JobView", "Progress"]

_COLUMNS = ("job", "overrides", "task", "instance", "gpus", "status", "elapsed", "cost")


class JobView(Protocol):
    """What the display reads from a job."""

    @property
    def num(self) -> int: ...

    @property
    def overrides_text(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def instance_type(self) -> str: ...

    @property
    def gpus(self) -> int: ...

    @property
    def status_text(self) -> str: ...

    def elapsed_seconds(self) -> float: ...

    def cost_text(self) -> str: ...


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _row(job: JobView) -> tuple[str, ...]:
    return (
        f"#{job.num}",
        job.overrides_text,
        job.task_id or "-",
        job.instance_type,
        gpus_text(job.gpus),
        job.status_text,
        _elapsed(job.elapsed_seconds()),
        job.cost_text(),
    )


def _table(jobs: Sequence[JobView], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in _COLUMNS:
        table.add_column(name, overflow="fold")
    for job in jobs:
        table.add_row(*_row(job))
    return table


class Progress:
    """Shows every job's state while a launch runs.

    Args:
        jobs: The jobs of this launch.
        stream: Where to write (default stderr).
        live: Force (True) or disable (False) the live table; default: live on a terminal.
    """

    def __init__(
        self, jobs: Sequence[JobView], stream: IO[str] | None = None, live: bool | None = None
    ) -> None:
        self.jobs = jobs  # read at every update: a session adds jobs as they are submitted
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream)
        if not self.console.is_terminal:  # a log file or pipe: do not wrap at 80 columns
            self.console = Console(file=self.stream, width=200)
        self.live_mode = self.console.is_terminal if live is None else live
        self._last: dict[int, str] = {}
        self._live: Live | None = None
        self._started = time.monotonic()

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(
                _table(self.jobs, "flow launcher"),
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self) -> None:
        """Redraw the live table, or print a line for each job whose status changed."""
        if self._live is not None:
            self._live.update(_table(self.jobs, "flow launcher"))
            return
        for job in self.jobs:
            if self._last.get(job.num) != job.status_text:
                self._last[job.num] = job.status_text
                self.stream.write("[flow] " + "  ".join(_row(job)) + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print one line (above the live table on a terminal)."""
        if self._live is None:
            self.stream.write(text + "\n")
            self.stream.flush()
        else:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def summary(self) -> None:
        """Print the final table: every job with its end state, time and cost."""
        wall = _elapsed(time.monotonic() - self._started)
        self.console.print(_table(self.jobs, f"flow launcher: {len(self.jobs)} job(s) in {wall}"))
