"""Run commands as tasks on GPU instances: local processes, the Mithril cloud, or SSH hosts.

The names below are imported on first use: Hydra imports every installed plugin's config module at
start-up (ours reads the instance catalog), and that should not load the client, its models and
settings for an app that never starts a task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flow_backend.client import Flow, run
    from flow_backend.models import TaskStatus
    from flow_backend.task import Task
    from flow_backend.task_config import TaskConfig, VolumeSpec

__all__ = ["Flow", "Task", "TaskConfig", "TaskStatus", "VolumeSpec", "run"]

_HOMES = {
    "Flow": "flow_backend.client",
    "run": "flow_backend.client",
    "TaskStatus": "flow_backend.models",
    "Task": "flow_backend.task",
    "TaskConfig": "flow_backend.task_config",
    "VolumeSpec": "flow_backend.task_config",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flow_backend' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
