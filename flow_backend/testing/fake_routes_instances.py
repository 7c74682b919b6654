"""The fake's instances (listed per project, filtered like the real API)."""

from __future__ import annotations

from typing import get_args

from flow_backend.providers.mithril.api.models import InstanceStatus
from flow_backend.testing.fake_http_types import FakeRequest, FakeResponse, QueryReader
from flow_backend.testing.fake_paging import page_of
from flow_backend.testing.fake_route_base import Handler, RouteGroup

#: The spec's enum, as the client's models spell it.
INSTANCE_STATUSES: tuple[str, ...] = get_args(InstanceStatus)

__all__ = ["INSTANCE_STATUSES", "InstanceRoutes"]


class InstanceRoutes(RouteGroup):
    """The fake's instances (listed per project, filtered like the real API)."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/instances", self.list_instances),
        ]

    def list_instances(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        query = QueryReader(request.query)
        project = query.text("project", required=True)
        instance_type = query.text("instance_type")
        region = query.text("region")
        statuses = query.csv("status_in", INSTANCE_STATUSES)
        query.csv("order_type_in", ("Bid", "Reservation"))
        bid_fids = query.csv("bid_fid_in")
        query.csv("reservation_fid_in")
        query.choice("sort_by", ("created_at", "instance_status", "instance_type_fid"))
        descending = query.choice("sort_dir", ("asc", "desc")) == "desc"
        limit = query.integer("limit", low=1, high=100, default=100)
        cursor = query.text("next_cursor")
        query.raise_problems()
        order = {fid: index for index, fid in enumerate(self.state.instances)}
        instances = [
            instance
            for instance in self.state.instances.values()
            if instance.project == project
            and (instance_type is None or instance.instance_type == instance_type)
            and (region is None or instance.region == region)
            and (statuses is None or instance.status in statuses)
            and (bid_fids is None or instance.bid in bid_fids)
        ]
        instances.sort(key=lambda instance: order[instance.fid], reverse=descending)
        return FakeResponse(
            200, page_of([instance.as_api() for instance in instances], limit, cursor)
        )
