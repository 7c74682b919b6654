"""Fault injection for the fake Mithril: errors, rate limits, latency (capacity and prices live in
``FakeMithril`` itself)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from flow_backend.testing.fake_http_types import FakeResponse

__all__ = ["FaultPlan"]


@dataclass
class FaultPlan:
    """What goes wrong, and how often. Change the fields or call the methods at any time.

    Attributes:
        error_rate: Fraction (0..1) of requests answered with ``error_status`` at random.
        error_status: The status of random errors (a 5xx).
        latency: Seconds added before every answer.
        only_paths: When set, faults hit only these route templates (e.g. ``"/v2/spot/bids"``).
    """

    error_rate: float = 0.0
    error_status: int = 503
    latency: float = 0.0
    only_paths: frozenset[str] | None = None
    seed: int | None = None
    _queue: list[FakeResponse] = field(default_factory=list, repr=False)
    _slow_next: list[float] = field(default_factory=list, repr=False)
    _lost: list[FakeResponse] = field(default_factory=list, repr=False)
    _replay_conflicts: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        """Make random errors repeatable."""
        self._rng = random.Random(seed)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (e.g. 500, 502, 503, or 403).

        Args:
            count: How many requests get this answer.
            status: The HTTP status.
            retry_after: Seconds sent as ``Retry-After`` (no header when None).
            detail: The body's ``detail`` (default: ``"Injected failure (<status>)"``), e.g.
                ``fail_next(1, 403, detail="organization limit reached")``.
        """
        headers = {} if retry_after is None else {"Retry-After": _header_seconds(retry_after)}
        body = {"detail": f"Injected failure ({status})" if detail is None else detail}
        with self._lock:
            self._queue.extend(
                FakeResponse(status, dict(body), dict(headers)) for _ in range(count)
            )

    def rate_limit_next(self, count: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``count`` requests with 429 and ``Retry-After: retry_after``."""
        self.fail_next(count, 429, retry_after=retry_after, detail="Too Many Requests")

    def lose_next(self, count: int = 1, status: int = 503) -> None:
        """Carry out the next ``count`` requests, then answer them with ``status`` instead (a
        gateway failing after the server acted: a POST's bid exists though the client saw a 5xx)."""
        with self._lock:
            self._lost.extend(
                FakeResponse(status, {"detail": f"Injected failure after acting ({status})"})
                for _ in range(count)
            )

    def conflict_next_replay(self, count: int = 1) -> None:
        """Answer the next ``count`` requests that repeat an ``Idempotency-Key`` already used with
        409, as the real API may (the SDK: such a 409 says nothing about what the first attempt
        made). By default a replayed key gets the first answer's bid again."""
        with self._lock:
            self._replay_conflicts += count

    def slow_next(self, count: int, seconds: float) -> None:
        """Delay the answers to the next ``count`` requests by ``seconds`` (to cause timeouts)."""
        with self._lock:
            self._slow_next.extend([seconds] * count)

    def clear(self) -> None:
        """No more faults."""
        with self._lock:
            self._queue.clear()
            self._slow_next.clear()
            self._lost.clear()
            self._replay_conflicts = 0
            self.error_rate = 0.0
            self.latency = 0.0
            self.only_paths = None

    def applies_to(self, template: str) -> bool:
        return self.only_paths is None or template in self.only_paths

    def delay_for(self, template: str) -> float:
        """Seconds to stall before answering this request."""
        if not self.applies_to(template):
            return 0.0
        with self._lock:
            extra = self._slow_next.pop(0) if self._slow_next else 0.0
        return self.latency + extra

    def injected_response(self, template: str) -> FakeResponse | None:
        """The fault to answer with instead of the real handler, if any."""
        if not self.applies_to(template):
            return None
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
            if self.error_rate > 0 and self._rng.random() < self.error_rate:
                return FakeResponse(self.error_status, {"detail": "Injected random failure"})
        return None

    def replay_response(self) -> FakeResponse | None:
        """The answer to a request repeating a used ``Idempotency-Key``, if a fault takes it."""
        with self._lock:
            if self._replay_conflicts <= 0:
                return None
            self._replay_conflicts -= 1
        return FakeResponse(409, {"detail": "A request with this Idempotency-Key is in progress"})

    def lost_response(self, template: str) -> FakeResponse | None:
        """The answer replacing the one of a request the fake carried out, if a fault takes it."""
        if not self.applies_to(template):
            return None
        with self._lock:
            return self._lost.pop(0) if self._lost else None


def _header_seconds(seconds: float) -> str:
    """``Retry-After``'s delta-seconds as the server writes it: ``"2"``, ``"1.5"``."""
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
