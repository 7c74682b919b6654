"""Cursor paging of the fake's list endpoints: ``{"data": [...], "next_cursor": ...}``."""

from __future__ import annotations

import base64
from typing import Any

from flow_backend.testing.fake_http_types import ApiError

__all__ = ["page_of"]


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "offset":
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            422, [{"loc": ["query", "next_cursor"], "msg": "Invalid cursor", "type": "value_error"}]
        ) from None


def page_of(items: list[Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """The page of ``items`` starting at ``cursor`` with at most ``limit`` entries."""
    start = _decode(cursor) if cursor else 0
    end = start + limit
    return {"data": items[start:end], "next_cursor": _encode(end) if end < len(items) else None}
