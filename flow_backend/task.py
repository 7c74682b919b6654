"""A handle on one running or finished task: :class:`Task`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, overload

from flow_backend.errors import TaskTimeoutError
from flow_backend.models import TaskRecord, TaskStatus, format_price

if TYPE_CHECKING:
    from flow_backend.providers.base import Provider

__all__ = ["Task"]

_FIRST_POLL_SECONDS = 0.02
_POLL_GROWTH = 1.5


class Task:
    """A task as last seen; :meth:`refresh` and :meth:`wait` update it from its provider.

    Args:
        record: The provider's record of the task.
        provider: The provider that runs it.
    """

    def __init__(self, record: TaskRecord, provider: Provider) -> None:
        self._record = record
        self._provider = provider

    # -- what is known -------------------------------------------------------------------------
    @property
    def record(self) -> TaskRecord:
        """The provider-neutral record as last refreshed."""
        return self._record

    @property
    def task_id(self) -> str:
        """Unique id of the task."""
        return self._record.task_id

    @property
    def name(self) -> str:
        """The task's name (with its unique suffix)."""
        return self._record.name

    @property
    def status(self) -> TaskStatus:
        """Status as last refreshed (``wait``/``refresh`` update it)."""
        return self._record.status

    @property
    def is_running(self) -> bool:
        """Whether the task was running when last refreshed."""
        return self._record.status is TaskStatus.RUNNING

    @property
    def is_terminal(self) -> bool:
        """Whether the task has ended (completed, failed or cancelled)."""
        return self._record.status.is_terminal

    @property
    def cost_per_hour(self) -> str:
        """Hourly price of the whole task (all its instances), e.g. ``"$25.60"`` (``"$0.00"`` locally)."""
        return format_price(self._record.cost_per_hour)

    @property
    def total_cost(self) -> str:
        """Dollars spent so far, e.g. ``"$1.23"``."""
        return format_price(self._record.total_cost)

    @property
    def exit_code(self) -> int | None:
        """The command's exit code once it ended (``None`` when unknown)."""
        return self._record.exit_code

    @property
    def message(self) -> str | None:
        """Why the task is in its state (failure reason, notes), if anything."""
        return self._record.message

    @property
    def instance_type(self) -> str:
        """The instance type the task runs on."""
        return self._record.instance_type

    @property
    def provider(self) -> Provider:
        """The provider running the task."""
        return self._provider

    @property
    def shell_command(self) -> str | None:
        """What to type for a shell where the task runs (``None`` when there is none)."""
        return self._provider.shell_command(self.task_id)

    @property
    def endpoints(self) -> dict[str, str]:
        """Service URLs of the task's exposed ports."""
        return dict(self._record.endpoints)

    # -- actions -------------------------------------------------------------------------------
    def refresh(self) -> Task:
        """Fetch the current record from the provider; returns ``self``."""
        self._record = self._provider.get(self.task_id)
        return self

    def update(self, record: TaskRecord) -> None:
        """Replace the record with a fresher one (used by ``Flow.refresh_all``)."""
        self._record = record

    def wait(self, timeout: float | None = None, poll_interval: float | None = None) -> TaskStatus:
        """Block until the task ends and return its final status.

        Polls with growing pauses (starting at 20 ms, capped at ``poll_interval``, default the
        ``poll_interval`` setting); the local provider blocks on its child processes instead.

        Raises:
            TaskTimeoutError: ``timeout`` seconds passed first (a ``TimeoutError``); the task keeps
                running.
        """
        cap = poll_interval or float(getattr(self._provider.settings, "poll_interval", 1.0))
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(_FIRST_POLL_SECONDS, cap)
        while True:
            self.refresh()
            if self.status.is_terminal:
                return self.status
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TaskTimeoutError(
                    f"Task {self.task_id!r} still {self.status.value} after waiting {timeout:g} s",
                    field="timeout",
                    value=timeout,
                    hint="Wait longer, or stop it with task.stop() / `flow cancel ID`",
                )
            step = pause if remaining is None else min(pause, remaining)
            self._provider.wait_for_change(self.task_id, step)
            pause = min(pause * _POLL_GROWTH, cap)

    @overload
    def logs(self, tail: int | None = None, follow: Literal[False] = False) -> str: ...

    @overload
    def logs(self, tail: int | None = None, *, follow: Literal[True]) -> Iterator[str]: ...

    def logs(self, tail: int | None = None, follow: bool = False) -> str | Iterator[str]:
        """The task's interleaved stdout/stderr.

        Args:
            tail: Only the last ``tail`` lines.
            follow: Return an iterator of lines that ends when the task ends.
        """
        if follow:
            return self._provider.follow_logs(self.task_id)
        return self._provider.logs(self.task_id, tail=tail)

    def stop(self) -> TaskStatus:
        """Stop the task (its whole process tree or instance); returns the final status."""
        self._record = self._provider.cancel(self.task_id)
        return self.status

    def shell(self, command: str | None = None) -> str:
        """Run ``command`` where the task runs and return its output; no command: interactive."""
        return self._provider.shell(self.task_id, command)

    def __repr__(self) -> str:
        record = self._record
        parts = [
            f"task_id={record.task_id!r}",
            f"name={record.name!r}",
            f"status={record.status.value!r}",
            f"provider={record.provider!r}",
            f"instance_type={record.instance_type!r}",
        ]
        if record.exit_code is not None:
            parts.append(f"exit_code={record.exit_code}")
        return f"Task({', '.join(parts)})"
