"""The interface every provider (local, mithril, ssh) implements.

``Flow`` and ``Task`` talk only to this interface. A provider keeps its own state (on disk for local,
in the cloud API for mithril) so that another process can see and control the same tasks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from flow_backend.instance_types import InstanceType
    from flow_backend.models import TaskRecord
    from flow_backend.remote import TaskHost
    from flow_backend.settings import FlowSettings
    from flow_backend.task_config import TaskConfig

__all__ = ["Provider", "VolumeInfo"]


class VolumeInfo(tuple[str, float, str]):
    """(name, size_gb, location) of a persistent volume."""

    __slots__ = ()

    def __new__(cls, name: str, size_gb: float, location: str) -> VolumeInfo:
        return super().__new__(cls, (name, size_gb, location))

    @property
    def name(self) -> str:
        return self[0]

    @property
    def size_gb(self) -> float:
        return self[1]

    @property
    def location(self) -> str:
        return self[2]


class Provider(ABC):
    """Runs tasks somewhere. Subclasses are constructed with the resolved settings."""

    name: ClassVar[str]
    #: Whether tasks see this machine's files at the same paths (this machine, or a cluster's
    #: shared filesystem): the launcher then runs jobs from the launch dir as it is, with nothing
    #: to upload or bring home.
    shares_files: bool = False
    #: Whether :meth:`submit_array` queues tasks in the provider's own scheduler (one submission,
    #: the provider starts them as resources allow) rather than starting them all at once.
    queues_arrays: bool = False
    #: Whether :meth:`task_host` reaches a running task's host (commands with input, its files
    #: over one pooled connection per host): a launcher can then feed long-lived worker tasks.
    reaches_tasks: bool = False

    def __init__(self, settings: FlowSettings) -> None:
        self.settings = settings

    # -- tasks -------------------------------------------------------------------------------
    @abstractmethod
    def submit(self, config: TaskConfig) -> TaskRecord:
        """Start a task and return its first record (usually ``pending``)."""

    def submit_array(
        self, configs: Sequence[TaskConfig], max_parallel: int | None = None
    ) -> list[TaskRecord]:
        """Submit tasks that share resources together (at most ``max_parallel`` running, when the
        provider queues them); records in order. The default submits them one by one."""
        return [self.submit(config) for config in configs]

    @abstractmethod
    def get(self, task_id: str) -> TaskRecord:
        """Current record of one task; raises ``TaskNotFoundError`` for an unknown id."""

    def get_many(self, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """Current records of many tasks. Remote providers override this with one list call."""
        return {task_id: self.get(task_id) for task_id in task_ids}

    def wait_for_change(self, task_id: str, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until the task may have changed (``Task.wait`` uses it).

        The default just sleeps; a provider that can block on the task itself (the local one, on
        its child processes) returns as soon as it ends.
        """
        time.sleep(max(0.0, timeout))

    @abstractmethod
    def list_tasks(
        self, *, active_only: bool = False, name_prefix: str | None = None
    ) -> list[TaskRecord]:
        """Every task this provider knows, newest first."""

    @abstractmethod
    def cancel(self, task_id: str) -> TaskRecord:
        """Stop a task (its whole process tree / its bid) and return the final record."""

    def cancel_many(self, task_ids: Sequence[str], *, wait: bool = True) -> dict[str, TaskRecord]:
        """Stop many tasks; their final records by id. The default cancels them one by one.

        ``wait=False`` lets a provider whose tasks end asynchronously (slurm) return once they are
        asked to stop, with records that may still be live; a later call with ``wait=True`` waits.
        """
        return {task_id: self.cancel(task_id) for task_id in task_ids}

    @abstractmethod
    def logs(self, task_id: str, tail: int | None = None) -> str:
        """The task's interleaved stdout/stderr so far (last ``tail`` lines when given)."""

    @abstractmethod
    def follow_logs(self, task_id: str) -> Iterator[str]:
        """Yield log lines as they come until the task ends."""

    @abstractmethod
    def shell(self, task_id: str, command: str | None = None) -> str:
        """Run ``command`` where the task runs and return its output; no command: interactive."""

    def shell_command(self, task_id: str) -> str | None:
        """The command a user types to get a shell where the task runs, if there is one."""
        return None

    def download(self, task_id: str, remote_path: str, local_path: Path) -> None:
        """Copy a file or folder from where the task runs to this machine (no-op when shared)."""
        return None

    def task_host(self, task_id: str) -> TaskHost | None:
        """The host and working folder of a running task's main node (``reaches_tasks``);
        ``None`` while it has none (or on a provider without hosts)."""
        return None

    def price_per_hour(self, instance_type: str) -> float:
        """What one instance of this type costs per hour on this provider (0.0 locally)."""
        return 0.0

    def limit_price_per_hour(self, config: TaskConfig) -> float | None:
        """The most one instance of ``config`` may be charged per hour when the provider bids for
        capacity (a spot bid's limit price), shown by ``flow run --dry-run``; None: no bidding."""
        return None

    def check_volumes(self, config: TaskConfig, tasks_at_once: int = 1) -> None:
        """Refuse, before anything starts, volumes that ``tasks_at_once`` tasks like ``config``
        (each with ``num_instances``) could not use at the same time; the default refuses nothing
        (local and ssh volumes are folders)."""
        return None

    def detach(self, task_id: str) -> str | None:
        """Hand a task this process started to something that outlives it (``flow run`` without
        ``--wait``). Returns a note for the user, or None when the task needs nothing from this
        process (the default: local tasks are processes of their own, state on disk)."""
        return None

    def instance_types(self) -> list[InstanceType]:
        """The instance types this provider offers (``flow instance-types``): the catalog here;
        a cloud provider lists its live catalog with its current prices."""
        from flow_backend.instance_types import catalog

        return catalog()

    # -- volumes -----------------------------------------------------------------------------
    def list_volumes(self) -> list[VolumeInfo]:
        return []

    def create_volume(self, name: str, size_gb: float) -> VolumeInfo:
        raise NotImplementedError(f"provider {self.name!r} has no volumes")

    def delete_volume(self, name: str) -> None:
        raise NotImplementedError(f"provider {self.name!r} has no volumes")

    def close(self) -> None:
        """Release connections. Does not stop tasks."""
        return None
