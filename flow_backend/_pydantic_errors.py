"""Turn pydantic's multi-line validation errors into one readable ``flow_backend`` error."""

from __future__ import annotations

from typing import Any

import pydantic

from flow_backend.errors import FlowError, ValidationError

__all__ = ["to_flow_error"]


def _field_name(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "value"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_flow_error(
    error: pydantic.ValidationError, *, where: str, secret_fields: frozenset[str] = frozenset()
) -> FlowError:
    """Convert the first problem of ``error`` into a :class:`ValidationError` naming field and value.

    A :class:`FlowError` raised inside a validator is returned unchanged, so its own hint survives.

    Args:
        error: What pydantic raised.
        where: What was being validated, e.g. ``"TaskConfig"`` or ``"~/.flow/config.yaml"``.
        secret_fields: Fields whose values must never be shown.
    """
    problems = error.errors(include_url=False)
    if not problems:
        return ValidationError(f"Invalid {where}", hint="Check the values given")
    first = problems[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FlowError):
        return cause
    field = _field_name(tuple(first.get("loc", ())))
    value = first.get("input")
    shown = "<hidden>" if field in secret_fields else _short(value)
    message = first.get("msg", "invalid value")
    message = message.removeprefix("Value error, ")
    more = (
        f" ({len(problems) - 1} more problem(s) after fixing this one)" if len(problems) > 1 else ""
    )
    if first.get("type") == "extra_forbidden":
        text = f"{where}: unknown field {field!r}{more}"
        hint = "Remove it or check its spelling"
    elif first.get("type") == "missing":
        text = f"{where}: field {field!r} is required{more}"
        hint = f"Give a value for {field}"
    else:
        text = f"{where}: field {field!r} has bad value {shown}: {message}{more}"
        hint = None
    return ValidationError(
        text, field=field, value=None if field in secret_fields else value, hint=hint
    )
