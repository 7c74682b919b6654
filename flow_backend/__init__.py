"""Run commands as tasks on GPU instances: local processes, the Mithril cloud, or SSH hosts."""

from flow_backend.client import Flow, run
from flow_backend.models import TaskStatus
from flow_backend.task import Task
from flow_backend.task_config import TaskConfig, VolumeSpec

__all__ = ["Flow", "Task", "TaskConfig", "TaskStatus", "VolumeSpec", "run"]
