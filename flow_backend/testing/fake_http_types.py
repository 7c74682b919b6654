"""Request/response values passed between the fake's HTTP layer and its routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiError", "FakeRequest", "FakeResponse", "QueryReader"]


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None
    body_error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


@dataclass
class FakeResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Answer the request with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def missing(where: str, name: str) -> dict[str, Any]:
    return {"loc": [where, name], "msg": "Field required", "type": "missing"}


class QueryReader:
    """Reads query parameters the way FastAPI would, collecting 422 items instead of raising."""

    def __init__(self, query: dict[str, list[str]]) -> None:
        self.query = query
        self.problems: list[dict[str, Any]] = []

    def text(self, name: str, *, required: bool = False) -> str | None:
        values = self.query.get(name)
        if not values:
            if required:
                self.problems.append(missing("query", name))
            return None
        return values[-1]

    def integer(self, name: str, *, low: int, high: int, default: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(
                {
                    "loc": ["query", name],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                }
            )
            return default
        if not low <= value <= high:
            self.problems.append(
                {
                    "loc": ["query", name],
                    "msg": f"Input should be between {low} and {high}",
                    "type": "less_than_equal" if value > high else "greater_than_equal",
                }
            )
            return default
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is not None and raw not in allowed:
            options = ", ".join(repr(option) for option in allowed)
            self.problems.append(
                {"loc": ["query", name], "msg": f"Input should be {options}", "type": "enum"}
            )
            return None
        return raw

    def csv(self, name: str, allowed: tuple[str, ...] | None = None) -> list[str] | None:
        raw = self.text(name)
        if raw is None:
            return None
        items = [item for item in raw.split(",") if item]
        for index, item in enumerate(items):
            if allowed is not None and item not in allowed:
                self.problems.append(
                    {
                        "loc": ["query", name, index],
                        "msg": "Input should be a valid value",
                        "type": "enum",
                    }
                )
        return items

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        self.problems.append(
            {
                "loc": ["query", name],
                "msg": "Input should be a valid boolean",
                "type": "bool_parsing",
            }
        )
        return default

    def raise_problems(self) -> None:
        """422 with every problem found so far."""
        if self.problems:
            raise ApiError(422, self.problems)
