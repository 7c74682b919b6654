"""Task states and the provider-neutral record of one task."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TaskRecord", "TaskStatus", "format_price", "utc_now"]


class TaskStatus(StrEnum):
    """Lifecycle: pending → provisioning → running → completed | failed | cancelled (+ preempting)."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    PREEMPTING = "preempting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the task can no longer change state."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def format_price(dollars: float) -> str:
    """Format a dollar amount the way the Flow API does: ``"$25.60"``."""
    return f"${dollars:,.2f}"


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class TaskRecord(BaseModel):
    """What a provider knows about one task at one moment.

    Providers create and update records; :class:`flow_backend.Task` wraps one and refreshes it.
    """

    model_config = ConfigDict(extra="forbid")

    task_id: str
    name: str
    provider: str
    status: TaskStatus = TaskStatus.PENDING
    instance_type: str
    num_instances: int = 1
    region: str | None = None
    cost_per_hour: float = 0.0
    created_at: datetime = Field(default_factory=utc_now)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    message: str | None = None
    ssh_destination: str | None = None
    endpoints: dict[str, str] = Field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        """Dollars spent so far (running time × hourly price)."""
        if self.started_at is None:
            return 0.0
        end = self.ended_at or utc_now()
        return max(0.0, (end - self.started_at).total_seconds() / 3600.0) * self.cost_per_hour
