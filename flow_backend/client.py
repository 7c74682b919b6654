"""The entry point: :class:`Flow` runs, finds and cancels tasks on one provider."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from flow_backend.errors import ValidationError
from flow_backend.models import TaskRecord
from flow_backend.providers import get_provider
from flow_backend.providers.base import Provider
from flow_backend.settings import FlowSettings, load_settings
from flow_backend.task import Task
from flow_backend.task_config import TaskConfig

__all__ = ["Flow", "run"]


class Flow:
    """A client of one provider.

    Args:
        provider: A provider name (``local``, ``mithril``, ``ssh``) or a constructed provider;
            default: the ``provider`` setting.
        settings: Resolved settings; default: :func:`flow_backend.settings.load_settings`.
        **setting_overrides: Settings given as arguments (highest precedence), e.g. ``home=...``.

    Use it as a context manager, or call :meth:`close`. Closing never stops tasks.
    """

    def __init__(
        self,
        provider: str | Provider | None = None,
        settings: FlowSettings | None = None,
        **setting_overrides: Any,
    ) -> None:
        if isinstance(provider, Provider):
            self.settings = settings or provider.settings
            self.provider = provider
            return
        if settings is None:
            settings = load_settings(provider=provider, **setting_overrides)
        elif provider is not None or setting_overrides:
            updates = dict(setting_overrides)
            if provider is not None:
                updates["provider"] = provider
            settings = FlowSettings(**{**dict(settings), **updates})
        self.settings = settings
        self.provider = get_provider(settings.provider, settings)

    # -- tasks ---------------------------------------------------------------------------------
    def run(self, config_or_command: TaskConfig | str | list[str], **fields: Any) -> Task:
        """Start a task and return its handle without waiting.

        Args:
            config_or_command: A :class:`TaskConfig`, or a command (string or argv list).
            **fields: TaskConfig fields; with a config they override its values.
        """
        config = _to_config(config_or_command, fields)
        record = self.provider.submit(config)
        return Task(record, self.provider)

    def get_task(self, task_id: str) -> Task:
        """The task with this id (raises ``TaskNotFoundError`` when there is none)."""
        return Task(self.provider.get(task_id), self.provider)

    def list_tasks(
        self, *, active_only: bool = False, name_prefix: str | None = None
    ) -> list[Task]:
        """Every task the provider knows, newest first."""
        records = self.provider.list_tasks(active_only=active_only, name_prefix=name_prefix)
        return [Task(record, self.provider) for record in records]

    def cancel(self, task_id: str) -> Task:
        """Stop a task and return its final state."""
        return Task(self.provider.cancel(task_id), self.provider)

    def refresh_all(self, tasks: Iterable[Task]) -> list[Task]:
        """Update many tasks with one ``provider.get_many`` call; returns them."""
        task_list = list(tasks)
        if not task_list:
            return task_list
        records: dict[str, TaskRecord] = self.provider.get_many([t.task_id for t in task_list])
        for task in task_list:
            record = records.get(task.task_id)
            if record is not None:
                task.update(record)
        return task_list

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the provider's connections (tasks keep running)."""
        self.provider.close()

    def __enter__(self) -> Flow:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Flow(provider={self.settings.provider!r}, home={str(self.settings.home)!r})"


def _to_config(
    config_or_command: TaskConfig | str | list[str], fields: dict[str, Any]
) -> TaskConfig:
    if isinstance(config_or_command, TaskConfig):
        if not fields:
            return config_or_command
        data = config_or_command.model_dump()
        data.update(fields)
        return TaskConfig(**data)
    if isinstance(config_or_command, str | list):
        return TaskConfig(command=config_or_command, **fields)
    raise ValidationError(
        f"Flow.run needs a TaskConfig or a command, got {type(config_or_command).__name__}",
        field="config_or_command",
        value=repr(config_or_command)[:80],
        hint="Pass TaskConfig(...) or a command such as 'python train.py'",
    )


def run(config_or_command: TaskConfig | str | list[str], **fields: Any) -> Task:
    """Start a task on the provider from settings (the module-level shortcut of ``Flow().run``).

    The client stays open for the returned task's sake (``wait``, ``logs``, ``stop`` use it).
    """
    return Flow().run(config_or_command, **fields)
