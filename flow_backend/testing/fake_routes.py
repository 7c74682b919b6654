"""The endpoints of the fake Mithril: what each one checks and answers, following ``openapi.json``.

One module per concept: :mod:`.fake_routes_account` (projects, SSH keys), :mod:`.fake_routes_market`
(instance types, availability, prices), :mod:`.fake_routes_volumes`, :mod:`.fake_routes_bids`,
:mod:`.fake_routes_instances`; this one maps ``(method, path)`` to their handlers.
"""

from __future__ import annotations

import re

from flow_backend.testing.fake_http_types import ApiError
from flow_backend.testing.fake_lifecycle import Lifecycle
from flow_backend.testing.fake_route_base import Handler
from flow_backend.testing.fake_routes_account import AccountRoutes
from flow_backend.testing.fake_routes_bids import BID_STATUSES, BidRoutes
from flow_backend.testing.fake_routes_instances import INSTANCE_STATUSES, InstanceRoutes
from flow_backend.testing.fake_routes_market import MarketRoutes
from flow_backend.testing.fake_routes_volumes import VolumeRoutes

__all__ = ["BID_STATUSES", "INSTANCE_STATUSES", "Router"]


class Router:
    """Maps ``(method, path)`` to a handler; each handler runs under the state lock."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.state = lifecycle.state
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        volumes = VolumeRoutes(lifecycle)
        groups = [
            AccountRoutes(lifecycle),
            MarketRoutes(lifecycle),
            volumes,
            BidRoutes(lifecycle, volumes),
            InstanceRoutes(lifecycle),
        ]
        for group in groups:
            for method, template, handler in group.routes():
                self._add(method, template, handler)

    def _add(self, method: str, template: str, handler: Handler) -> None:
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
        self.routes.append((method, pattern, template, handler))

    def match(self, method: str, path: str) -> tuple[str, Handler, dict[str, str]]:
        """The route template, handler and path parameters; 404 / 405 when none matches."""
        path_known = False
        for route_method, pattern, template, handler in self.routes:
            found = pattern.match(path)
            if found:
                path_known = True
                if route_method == method:
                    return template, handler, found.groupdict()
        if path_known:
            raise ApiError(405, "Method Not Allowed")
        raise ApiError(404, "Not Found")
