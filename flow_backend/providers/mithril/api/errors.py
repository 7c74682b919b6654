"""The one place where Mithril HTTP failures become :mod:`flow_backend.errors`.

- 401, and a 403 without a reason → ``AuthenticationError`` with the API-key hint
- 403 whose detail names a quota → ``InsufficientQuotaError``; another 403 whose JSON ``detail`` says
  why (an organization limit, a gated feature) → ``PermissionDeniedError`` quoting it, no key guess
- 404 → ``ResourceNotFoundError``
- any other 4xx whose detail names quota or capacity → ``InsufficientQuotaError``
- 409 → ``ConflictError`` (a ``ValidationError``: a name already taken)
- 422 and other 4xx → ``ValidationError`` carrying the server's ``detail``
- 429 or 5xx still returned after the transport's retries → ``ProviderError`` (saying how long the
  server's ``Retry-After`` asked to wait, and that it was not tried again when that is over the cap)
- timeouts and connection errors after the transport's retries → ``ProviderError``

Retries happen earlier, in :mod:`flow_backend.providers.mithril.api.transport`; by the time a
response reaches this module it is final.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from flow_backend.errors import (
    AuthenticationError,
    ConflictError,
    FlowError,
    InsufficientQuotaError,
    PermissionDeniedError,
    ProviderError,
    ResourceNotFoundError,
    ValidationError,
)
from flow_backend.providers.mithril.api.transport import (
    RetryPolicy,
    retries_status,
    retry_after_seconds,
)

__all__ = ["error_for_response", "error_for_transport_failure", "server_detail"]

_QUOTA_WORDS = re.compile(r"quota|capacity|insufficient|limit exceeded", re.IGNORECASE)


_NOT_JSON = object()


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _NOT_JSON


def server_detail(response: httpx.Response) -> Any:
    """The ``detail`` of an error body (a string or FastAPI's list), or the raw text."""
    body = _json_body(response)
    if body is _NOT_JSON:
        return response.text.strip()[:500] or None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def _reason(response: httpx.Response, detail: Any) -> str | None:
    """The server's own words for a refusal: a non-empty string ``detail`` of a JSON body.

    A proxy's HTML or plain-text page is no reason (the SDK does not quote it either).
    """
    if isinstance(detail, str) and detail.strip() and _json_body(response) is not _NOT_JSON:
        return detail.strip()
    return None


def _was_retried(response: httpx.Response, retry: RetryPolicy | None) -> bool:
    """Whether the transport tried this response's request again (a bare POST's 5xx it does not)."""
    if retry is not None and retry.max_attempts == 1:
        return False
    try:
        request = response.request
    except RuntimeError:  # a response built without a request: nothing to tell, assume so
        return True
    return retries_status(request, response.status_code)


def _seconds(value: float) -> str:
    """``120`` → ``"120"``, ``1.5`` → ``"1.5"``."""
    return f"{round(value, 1):g}"


def _unchanged(detail: Any) -> Any:
    return detail


def _describe(detail: Any) -> str:
    """One line per FastAPI validation item: ``body.limit_price: Input should be ...``."""
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc", []))
                lines.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg")))
            else:
                lines.append(str(item))
        return "; ".join(lines)
    return "" if detail is None else str(detail)


def _first_field(detail: Any) -> str | None:
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(part) for part in detail[0].get("loc", [])]
        if loc and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        return ".".join(loc) or None
    return None


def error_for_response(
    response: httpx.Response,
    *,
    what: str,
    retry: RetryPolicy | None = None,
    redact: Callable[[Any], Any] = _unchanged,
) -> FlowError:
    """Build the error for a final non-2xx ``response`` to the call described by ``what``.

    Args:
        response: The failed response (its body is read here).
        what: The operation in a few words, e.g. ``"create spot bid 'hf-1-0'"``.
        retry: The transport's policy: a ``Retry-After`` longer than it waits was not tried
            again, and the error says so.
        redact: Takes secrets (the API key) out of the server's detail before it is quoted.
    """
    response.read()
    status = response.status_code
    detail = redact(server_detail(response))
    text = _describe(detail)
    said = f" (HTTP {status}: {text})" if text else f" (HTTP {status})"
    if status == 401 or status == 403:
        if status == 403 and _QUOTA_WORDS.search(text):
            return InsufficientQuotaError(
                f"Mithril refused to {what}: quota exceeded{said}",
                hint="Lower num_instances, cancel running bids, or ask Mithril for more quota",
            )
        reason = _reason(response, detail) if status == 403 else None
        if reason is not None:
            return PermissionDeniedError(
                f"Mithril refused to {what}: {reason} (HTTP 403)",
                hint="Mithril gave its reason; an admin of your Mithril organization can change "
                "its limits and access",
            )
        return AuthenticationError(
            f"Mithril rejected the API key while trying to {what}{said}",
            field="mithril_api_key",
            hint="Set MITHRIL_API_KEY to a valid key (create one in the Mithril console)",
        )
    wait = retry_after_seconds(response) if status == 429 or status >= 500 else None
    if wait is not None and retry is not None and not retry.waits_for(wait):
        return ProviderError(
            f"Mithril asked to wait {_seconds(wait)} s before the request to {what} is tried again, "
            f"longer than the {_seconds(retry.max_retry_after)} s this client waits, so it was not "
            f"tried again{said}",
            hint=f"Try again in {_seconds(wait)} s"
            + (", and poll less often" if status == 429 else ""),
        )
    asked = f"; the server asked to wait {_seconds(wait)} s" if wait is not None else ""
    if status == 404:
        return ResourceNotFoundError(
            f"Mithril could not find what was asked to {what}{said}",
            hint="Check the id or name; list what exists with `flow status` or the Mithril console",
        )
    if status == 429:
        return ProviderError(
            f"Mithril kept rate-limiting the request to {what}{said}{asked}",
            hint="Wait a minute and try again, or poll less often",
        )
    if status >= 500:
        retried = _was_retried(response, retry)
        return ProviderError(
            f"Mithril failed to {what}"
            + (" and kept failing after retries" if retried else "")
            + f"{said}{asked}",
            hint="Try again later; check https://status.mithril.ai",
        )
    if _QUOTA_WORDS.search(text):
        return InsufficientQuotaError(
            f"Mithril has no capacity or quota to {what}{said}",
            hint="Try another region or instance type, lower num_instances, or wait for capacity",
        )
    kind = ConflictError if status == 409 else ValidationError
    return kind(
        f"Mithril rejected the request to {what}{said}",
        field=_first_field(detail),
        value=detail,
        hint="Fix the named field and try again",
    )


def error_for_transport_failure(error: httpx.TransportError, *, what: str, url: str) -> FlowError:
    """Build the error for a request that never got a response (after the transport's retries)."""
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "could not connect"
    return ProviderError(
        f"Mithril request to {what} {kind} at {url} ({type(error).__name__})",
        field="mithril_api_url",
        value=url,
        hint="Check MITHRIL_API_URL and your network connection, then try again",
    )
