"""The fake's HTTP plumbing on stdlib ``ThreadingHTTPServer``: parsing, auth, faults, counting."""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flow_backend.testing.fake_http_types import ApiError, FakeRequest, FakeResponse
from flow_backend.testing.fake_routes import Router
from flow_backend.testing.faults import FaultPlan
from flow_backend.testing.openapi_check import SpecExchange

__all__ = ["FakeHttpServer"]

logger = logging.getLogger("flow_backend.testing.fake_mithril")


class FakeHttpServer(ThreadingHTTPServer):
    """Serves the routes on a loopback port; the API key is compared in constant time."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], router: Router, faults: FaultPlan, api_key: str
    ) -> None:
        super().__init__(address, _Handler)
        self.router = router
        self.faults = faults
        self._api_key = api_key
        self.counts: Counter[str] = Counter()
        self.counts_lock = threading.Lock()
        self.record_traffic = False
        self.exchanges: list[SpecExchange] = []
        #: Rewrites every JSON body on its way out (an API newer than the spec); None: as is.
        self.evolve: Callable[[Any], Any] | None = None

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].encode(), self._api_key.encode())

    def _replay_fault(self, request: FakeRequest) -> FakeResponse | None:
        """A fault's answer to a request repeating a used ``Idempotency-Key`` (else None)."""
        key = request.headers.get("idempotency-key")
        if not key or key not in self.router.state.idempotent_bids:
            return None
        return self.faults.replay_response()

    def answer(self, request: FakeRequest, authorization: str | None) -> FakeResponse:
        try:
            template, handler, params = self.router.match(request.method, request.path)
        except ApiError as error:
            template, handler, params = request.path, None, {}
            routing_error: ApiError | None = error
        else:
            routing_error = None
        with self.counts_lock:
            self.counts[f"{request.method} {template}"] += 1
        delay = self.faults.delay_for(template)
        if delay > 0:
            time.sleep(delay)
        injected = self.faults.injected_response(template)
        if injected is not None:
            response = injected
        elif not self.authorized(authorization):
            response = FakeResponse(
                401, {"detail": "Invalid or missing API key"}, {"WWW-Authenticate": "Bearer"}
            )
        else:
            try:
                if routing_error is not None:
                    raise routing_error
                assert handler is not None
                with self.router.state.lock:
                    replay = self._replay_fault(request)
                    response = replay or handler(request, params)
            except ApiError as error:
                response = FakeResponse(error.status, {"detail": error.detail}, error.headers)
            response = self.faults.lost_response(template) or response
        if self.record_traffic:
            with self.counts_lock:
                self.exchanges.append(
                    SpecExchange(
                        request.method,
                        request.path,
                        request.query,
                        request.body,
                        response.status,
                        response.body,
                    )
                )
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: with Nagle's algorithm the body waited for the
    # client's delayed ACK, 40 ms a response on loopback
    disable_nagle_algorithm = True
    server: FakeHttpServer

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                body_error = str(error)
        request = FakeRequest(
            method=self.command,
            path=parts.path.rstrip("/") or "/",
            query=parse_qs(parts.query, keep_blank_values=False),
            body=body,
            body_error=body_error,
            headers={
                name.lower(): value
                for name, value in self.headers.items()
                if name.lower() != "authorization"
            },
        )
        try:
            response = self.server.answer(request, self.headers.get("Authorization"))
        except Exception:  # a bug in the fake: answer 500 like a real server would
            logger.exception("fake Mithril failed on %s %s", self.command, parts.path)
            response = FakeResponse(500, {"detail": "Internal Server Error"})
        body = response.body
        if body is not None and self.server.evolve is not None:
            body = self.server.evolve(body)
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, on the fake's clock (``FakeSettings.clock_offset``)."""
        if timestamp is None:
            timestamp = self.server.router.lifecycle.settings.now().timestamp()
        return super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only (no headers): nothing secret reaches the log.
        logger.debug("fake Mithril: " + format, *args)
