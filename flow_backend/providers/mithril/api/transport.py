"""Retries for the Mithril client, done once in the transport rather than around every call.

Policy (documented in README's cloud section):

- ``429 Too Many Requests`` is retried for every method (the server did not act on the request).
- ``500/502/503/504``, timeouts and broken connections after the request was sent are retried only for
  idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) and for requests carrying an
  ``Idempotency-Key`` (every bid POST does): a retried POST without one could create a second bid.
- A retried status waits the response's ``Retry-After`` (seconds or an HTTP date) when it has one, as
  the real SDK does for 429 and 5xx. When the server asks for more than ``max_retry_after``, the
  response is handed back at once: no early retry while the server asked clients to stay away, and no
  long stall; the error then says how long the server asked to wait.
- Connection failures (nothing was sent: ``ConnectError``, ``ConnectTimeout``) are retried for every
  method, POST included.
- Backoff is exponential with full jitter: ``uniform(0, min(max_delay, base * 2**attempt))``.
- At most ``max_attempts`` tries in all; the last response or exception is handed back unchanged and
  mapped to a ``flow_backend.errors`` class by the client.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

__all__ = [
    "ATTEMPTS",
    "IDEMPOTENT_METHODS",
    "RETRIED_STATUSES",
    "RetryPolicy",
    "RetryTransport",
    "attempts_of",
    "is_idempotent",
    "retries_status",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
#: The response extension saying how many times the transport sent its request.
ATTEMPTS = "hydraflow.attempts"


class RetryPolicy:
    """How often and how long to retry.

    Args:
        max_attempts: Tries in all, the first included (1 disables retries).
        backoff_base: Seconds of the first backoff step.
        backoff_max: Longest single backoff wait in seconds.
        max_retry_after: Longest ``Retry-After`` in seconds the client waits; a server asking for
            more ends the retries at once (never a shorter, early retry).
    """

    def __init__(
        self,
        max_attempts: int = 5,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        max_retry_after: float = 60.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based), with full jitter."""
        return rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def waits_for(self, seconds: float) -> bool:
        """Whether the client waits ``seconds`` for a retry (else it gives up at once)."""
        return seconds <= self.max_retry_after

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, backoff_base={self.backoff_base}, "
            f"backoff_max={self.backoff_max}, max_retry_after={self.max_retry_after})"
        )


class RetryTransport(httpx.BaseTransport):
    """An ``httpx`` transport that retries transient failures of the transport it wraps.

    Args:
        wrapped: The transport doing the I/O (default: a fresh ``httpx.HTTPTransport``).
        policy: Attempts and waits.
        sleep: Called with the seconds to wait (tests pass a recorder).
        rng: Jitter source.
    """

    def __init__(
        self,
        wrapped: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.wrapped = wrapped if wrapped is not None else httpx.HTTPTransport()
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        idempotent = is_idempotent(request)
        attempt = 1
        while True:
            last_try = attempt >= self.policy.max_attempts
            try:
                response = self.wrapped.handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if last_try:
                    raise
                self._wait(request, attempt, type(error).__name__, None)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
                if last_try or not idempotent:
                    raise
                self._wait(request, attempt, type(error).__name__, None)
            else:
                status = response.status_code
                response.extensions = {**response.extensions, ATTEMPTS: attempt}
                if last_try or not retries_status(request, status):
                    return response
                delay = retry_after_seconds(response)
                if delay is not None and not self.policy.waits_for(delay):
                    logger.info(
                        "Mithril %s %s: HTTP %d asks to wait %.1fs, more than %.1fs: not retried",
                        request.method,
                        request.url.path,
                        status,
                        delay,
                        self.policy.max_retry_after,
                    )
                    return response
                response.close()
                self._wait(request, attempt, f"HTTP {status}", delay)
            attempt += 1

    def _wait(self, request: httpx.Request, attempt: int, reason: str, delay: float | None) -> None:
        seconds = delay if delay is not None else self.policy.backoff(attempt, self._rng)
        # Only method and path are logged: the URL's query and the headers stay out of logs.
        logger.info(
            "Mithril %s %s: %s, retry %d/%d in %.2fs",
            request.method,
            request.url.path,
            reason,
            attempt,
            self.policy.max_attempts - 1,
            seconds,
        )
        self._sleep(seconds)

    def close(self) -> None:
        self.wrapped.close()


def attempts_of(response: httpx.Response) -> int:
    """How many times the transport sent ``response``'s request (1 if it did not count)."""
    attempts = response.extensions.get(ATTEMPTS, 1)
    return attempts if isinstance(attempts, int) else 1


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of ``response`` in seconds (delta or HTTP date, never negative).

    Returns:
        The seconds the server asked clients to wait, or None if the header is absent or unreadable.
    """
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = http_date(value)
        if when is None:
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):  # "nan" and "inf" parse as floats
        return None
    return max(seconds, 0.0)


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Date``, ``Retry-After``) as an aware datetime; None if absent or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)  # "-0000": UTC


def is_idempotent(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice acts once (an idempotent method or an Idempotency-Key)."""
    return request.method.upper() in IDEMPOTENT_METHODS or "idempotency-key" in request.headers


def retries_status(request: httpx.Request, status: int) -> bool:
    """Whether the transport tries ``request`` again after an answer with ``status``."""
    return status == 429 or (status in RETRIED_STATUSES and is_idempotent(request))
