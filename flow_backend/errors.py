"""The one error hierarchy of flow_backend.

Every error names what was wrong (the field and the bad value where there is one) and what to do about
it. CLIs print ``str(error)`` and exit non-zero; they never show a traceback for these.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "FlowError",
    "HostKeyChangedError",
    "InsufficientQuotaError",
    "PermissionDeniedError",
    "ProviderError",
    "ResourceNotFoundError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "ValidationError",
]


class FlowError(Exception):
    """Base class of every error flow_backend raises on purpose.

    Args:
        message: What went wrong, in one sentence.
        field: The name of the offending field or setting, if any.
        value: The offending value, if any (never a secret).
        hint: What the user should do about it.
    """

    #: How many times the request behind the error was sent (over 1: it was retried, so an
    #: earlier attempt may have acted even though the last one was refused).
    attempts: int = 1

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.value = value
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.message.rstrip(".") + "."
        if self.hint:
            text += " " + self.hint.rstrip(".") + "."
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.field, self.value, self.hint))


def _rebuild(
    cls: type[FlowError], message: str, field: str | None, value: Any, hint: str | None
) -> FlowError:
    return cls(message, field=field, value=value, hint=hint)


class ValidationError(FlowError, ValueError):
    """A configuration, setting or argument has a bad value."""


class ConflictError(ValidationError):
    """The request clashes with something that exists already (HTTP 409: a name taken)."""


class ResourceNotFoundError(FlowError, LookupError):
    """An instance type, volume, region or other named resource does not exist."""


class TaskNotFoundError(ResourceNotFoundError):
    """No task has the given id."""

    @classmethod
    def of(cls, task_id: str, message: str, hint: str) -> TaskNotFoundError:
        """The error for ``task_id`` (the field and value every provider names)."""
        return cls(message, field="task_id", value=task_id, hint=hint)


class InsufficientQuotaError(FlowError):
    """The provider has no capacity or quota left for the request."""


class AuthenticationError(FlowError):
    """The API key is missing, wrong or lacks the permission needed."""


class PermissionDeniedError(AuthenticationError):
    """The key is valid but the provider refused the action and said why (a limit, a gated feature)."""


class ProviderError(FlowError):
    """The provider failed in a way the user cannot fix by changing input (5xx, network)."""


class HostKeyChangedError(ProviderError):
    """A host answered with another SSH host key than the one trusted for it (nothing was sent)."""


class TaskTimeoutError(FlowError, TimeoutError):
    """``Task.wait(timeout=...)`` ran out of time before the task ended."""
