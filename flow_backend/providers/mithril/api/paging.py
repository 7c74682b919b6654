"""Cursor paging over ``{"data": [...], "next_cursor": ...}`` lists."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flow_backend.providers.mithril.api.models import Page

__all__ = ["iterate_pages"]

ItemT = TypeVar("ItemT")


def iterate_pages(
    fetch: Callable[[dict[str, Any]], dict[str, Any]],
    item_type: type[ItemT],
    params: dict[str, Any],
    *,
    max_pages: int = 1000,
) -> Iterator[ItemT]:
    """Yield every item of a cursor-paged list, fetching pages lazily.

    Args:
        fetch: Sends one GET with the given query parameters and returns the decoded body.
        item_type: The pydantic model of one item.
        params: Query parameters of the first page; ``next_cursor`` is added for the next ones.
        max_pages: Guard against a server that never stops returning a cursor.
    """
    query = {key: value for key, value in params.items() if value is not None}
    seen_cursors: set[str] = set()
    for _ in range(max_pages):
        page = Page[item_type].model_validate(fetch(query))  # type: ignore[valid-type]
        yield from page.data
        cursor = page.next_cursor
        if not cursor or cursor in seen_cursors:
            return
        seen_cursors.add(cursor)
        query = {**query, "next_cursor": cursor}
