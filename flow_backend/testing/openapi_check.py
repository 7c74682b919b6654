"""Check HTTP traffic against the Mithril OpenAPI spec (``jsonschema`` needed: a test dependency).

The spec is OpenAPI 3.0 style: ``nullable: true`` beside a ``type`` (or alone, meaning "anything"),
``$ref`` into ``#/components/schemas`` (sometimes with a sibling ``nullable``), one ``oneOf``, and a
non-standard ``format: datetime``. :func:`to_json_schema` turns that into JSON Schema 2020-12.

Use :class:`RecordingTransport` under a client to collect what it sends and gets back, then
``SpecChecker().problems_in(recorder.exchanges)``; or check a :class:`FakeMithril`'s own
``exchanges`` (recorded with ``record_traffic=True``).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

__all__ = ["SPEC_PATH", "RecordingTransport", "SpecChecker", "SpecExchange", "to_json_schema"]

SPEC_PATH = Path(__file__).resolve().parents[1] / "providers" / "mithril" / "api" / "openapi.json"

#: Statuses any endpoint may answer although the spec lists only 2xx/422 for most of them.
GENERIC_ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class SpecExchange:
    """One request and its response, decoded."""

    method: str
    path: str
    query: dict[str, list[str]]
    request_body: Any
    status: int
    response_body: Any


def to_json_schema(schema: Any) -> Any:
    """Convert one OpenAPI 3.0 schema (recursively) to JSON Schema 2020-12."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: to_json_schema(value) for key, value in schema.items() if key != "nullable"}
    if "$ref" in converted:
        converted["$ref"] = converted["$ref"].replace("#/components/schemas/", "#/$defs/")
    for key in ("gt", "lt"):  # the spec's size_gb carries pydantic-internal objects here
        if isinstance(converted.get(key), dict):
            converted.pop(key)
    if schema.get("nullable"):
        if "$ref" in converted:
            reference = {"$ref": converted.pop("$ref")}
            return {**converted, "anyOf": [reference, {"type": "null"}]}
        if "type" in converted:
            kinds = (
                converted["type"] if isinstance(converted["type"], list) else [converted["type"]]
            )
            converted["type"] = [*kinds, "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
    return converted


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class SpecChecker:
    """Validates requests and responses of the operations in ``openapi.json``."""

    def __init__(self) -> None:
        import jsonschema  # test dependency, imported only when checking

        spec = _spec()
        self._defs = {name: to_json_schema(s) for name, s in spec["components"]["schemas"].items()}
        checker = jsonschema.FormatChecker()
        checker.checks("datetime")(_is_datetime)
        checker.checks("date-time")(_is_datetime)
        self._jsonschema = jsonschema
        self._format_checker = checker
        self._operations: list[tuple[re.Pattern[str], str, str, dict[str, Any]]] = []
        for template, methods in spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", template) + "$")
            for method, operation in methods.items():
                self._operations.append((pattern, template, method.upper(), operation))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The spec's path template and operation for a concrete request, if any."""
        for pattern, template, op_method, operation in self._operations:
            if op_method == method.upper() and pattern.match(path):
                return template, operation
        return None

    def _errors(self, schema: Any, value: Any) -> list[str]:
        root = {"$defs": self._defs, **to_json_schema(schema)}
        validator = self._jsonschema.Draft202012Validator(root, format_checker=self._format_checker)
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in validator.iter_errors(value)
        ]

    def request_problems(self, exchange: SpecExchange) -> list[str]:
        """What is wrong with the request of ``exchange`` (empty when it follows the spec)."""
        where = f"{exchange.method} {exchange.path}"
        found = self.operation(exchange.method, exchange.path)
        if found is None:
            return [f"{where}: no such operation in the spec"]
        _, operation = found
        problems = []
        known = set()
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            name = parameter["name"]
            known.add(name)
            values = exchange.query.get(name)
            if not values:
                if parameter.get("required"):
                    problems.append(f"{where}: required query parameter {name!r} missing")
                continue
            value = _coerce_query(values[-1], parameter.get("schema", {}))
            problems += [
                f"{where}: query {name}: {text}"
                for text in self._errors(parameter.get("schema", {}), value)
            ]
        problems += [
            f"{where}: unknown query parameter {name!r}"
            for name in exchange.query
            if name not in known
        ]
        body_spec = operation.get("requestBody")
        if body_spec is not None:
            if exchange.request_body is None:
                if body_spec.get("required"):
                    problems.append(f"{where}: request body missing")
            else:
                schema = body_spec["content"]["application/json"]["schema"]
                problems += [
                    f"{where}: body {text}" for text in self._errors(schema, exchange.request_body)
                ]
        elif exchange.request_body is not None:
            problems.append(f"{where}: the spec takes no request body")
        return problems

    def response_problems(self, exchange: SpecExchange) -> list[str]:
        """What is wrong with the response of ``exchange`` (empty when it follows the spec)."""
        where = f"{exchange.method} {exchange.path} → {exchange.status}"
        found = self.operation(exchange.method, exchange.path)
        if found is None:
            if exchange.status in (404, 405):
                return []
            return [f"{where}: no such operation in the spec"]
        _, operation = found
        documented = operation.get("responses", {}).get(str(exchange.status))
        if documented is None:
            if exchange.status not in GENERIC_ERROR_STATUSES:
                return [f"{where}: status not documented for this operation"]
            body = exchange.response_body
            if not isinstance(body, dict) or "detail" not in body:
                return [f"{where}: error body should be {{'detail': ...}}, got {body!r}"]
            return []
        content = documented.get("content", {}).get("application/json")
        if content is None:
            if exchange.response_body is not None:
                return [f"{where}: the spec documents no body, got {exchange.response_body!r}"]
            return []
        return [
            f"{where}: {text}" for text in self._errors(content["schema"], exchange.response_body)
        ]

    def problems_in(self, exchanges: list[SpecExchange]) -> list[str]:
        """Every request and response problem in ``exchanges``."""
        problems: list[str] = []
        for exchange in exchanges:
            problems += self.request_problems(exchange)
            problems += self.response_problems(exchange)
        return problems


def _coerce_query(raw: str, schema: dict[str, Any]) -> Any:
    """Turn a query string value into what its schema describes (ints, booleans, CSV arrays)."""
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    if kind == "array":
        return [item for item in raw.split(",") if item]
    return raw


def _decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return content.decode(errors="replace")


class RecordingTransport(httpx.BaseTransport):
    """Wraps a transport and keeps every exchange that passes through (each retry included)."""

    def __init__(self, wrapped: httpx.BaseTransport | None = None) -> None:
        self.wrapped = wrapped or httpx.HTTPTransport()
        self.exchanges: list[SpecExchange] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request_body = _decode(request.read())
        response = self.wrapped.handle_request(request)
        content = response.read()
        exchange = SpecExchange(
            method=request.method,
            path=request.url.path,
            query=parse_qs(request.url.query.decode()),
            request_body=request_body,
            status=response.status_code,
            response_body=_decode(content),
        )
        with self._lock:
            self.exchanges.append(exchange)
        return httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )

    def close(self) -> None:
        self.wrapped.close()
