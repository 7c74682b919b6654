"""The fake's spot bids: list, place (with every check the real API makes), get, cancel."""

from __future__ import annotations

import re
from typing import get_args

from flow_backend.providers.mithril.api.models import BidStatus, CreateBidRequest
from flow_backend.testing.fake_http_types import ApiError, FakeRequest, FakeResponse, QueryReader
from flow_backend.testing.fake_lifecycle import Lifecycle
from flow_backend.testing.fake_paging import page_of
from flow_backend.testing.fake_route_base import Handler, RouteGroup, parse_body
from flow_backend.testing.fake_routes_volumes import VolumeRoutes
from flow_backend.testing.fake_state import FakeBid, new_fid

#: The API's name rule for bids (the SDK's ``TASK_NAME_PATTERN``).
BID_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: The spec's enum, as the client's models spell it.
BID_STATUSES: tuple[str, ...] = get_args(BidStatus)

__all__ = ["BID_NAME", "BID_STATUSES", "BidRoutes"]


class BidRoutes(RouteGroup):
    """The fake's spot bids: list, place (with every check the real API makes), get, cancel."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/spot/bids", self.list_bids),
            ("POST", "/v2/spot/bids", self.create_bid),
            ("GET", "/v2/spot/bids/{bid_fid}", self.get_bid),
            ("DELETE", "/v2/spot/bids/{bid_fid}", self.cancel_bid),
        ]

    def __init__(self, lifecycle: Lifecycle, volumes: VolumeRoutes) -> None:
        super().__init__(lifecycle)
        self.volumes = volumes

    def list_bids(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        query = QueryReader(request.query)
        filters = {
            "project": query.text("project"),
            "instance_type": query.text("instance_type"),
            "region": query.text("region"),
            "status": query.choice("status", BID_STATUSES),
            "name": query.text("name"),
        }
        sort_by = query.choice("sort_by", ("created_at", "status")) or "created_at"
        descending = query.choice("sort_dir", ("asc", "desc")) == "desc"
        limit = query.integer("limit", low=1, high=100, default=100)
        cursor = query.text("next_cursor")
        query.raise_problems()
        bids = [
            bid
            for bid in self.state.bids.values()
            if bid.shown(self.settings.bid_visibility_delay)
            and all(value is None or getattr(bid, key) == value for key, value in filters.items())
        ]
        bids.sort(
            key=lambda bid: (bid.status, bid.seq) if sort_by == "status" else (bid.seq,),
            reverse=descending,
        )
        return FakeResponse(200, page_of([bid.as_api() for bid in bids], limit, cursor))

    def create_bid(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        body = parse_body(request, CreateBidRequest)
        key = request.headers.get("idempotency-key")
        if key and key in self.state.idempotent_bids:  # a retried POST: the same bid again
            return FakeResponse(201, self.state.bids[self.state.idempotent_bids[key]].as_api())
        self._project(body.project)
        if not BID_NAME.match(body.name):
            raise ApiError(
                400,
                f"Invalid name {body.name!r}: use lowercase letters, digits, '.', '_' and '-', "
                "starting with a letter or digit",
            )
        it = self.state.type_by_fid(body.instance_type)
        if it is None:
            raise ApiError(404, f"Instance type {body.instance_type!r} not found")
        self._region(body.region)
        if (it.fid, body.region) not in self.state.capacity:
            raise ApiError(400, f"Instance type {it.name} is not offered in {body.region}")
        minimum = round(self.lifecycle.minimum_price(it.fid, body.region), 2)
        if body.limit_price < minimum:
            raise ApiError(
                400,
                f"Limit price below minimum: ${body.limit_price:.2f} offered, the minimum for "
                f"{it.name} in {body.region} is ${minimum:.2f} per instance-hour",
            )
        spec = body.launch_specification
        self._check_ssh_keys(body.project, spec.ssh_keys)
        volumes = self.volumes.bid_volumes(body.region, spec.volumes, body.instance_quantity)
        quota = self.settings.quota_instances
        if quota is not None:
            live = sum(bid.instance_quantity for bid in self.state.bids.values() if bid.live)
            if live + body.instance_quantity > quota:
                raise ApiError(
                    400,
                    f"Insufficient quota: {live} instances live, {body.instance_quantity} requested, "
                    f"quota is {quota}",
                )
        bid = FakeBid(
            fid=new_fid("bid"),
            seq=self.state.next_seq(),
            name=body.name,
            project=body.project,
            region=body.region,
            instance_type=body.instance_type,
            limit_price=body.limit_price,
            instance_quantity=body.instance_quantity,
            launch_specification=spec.model_dump(mode="json"),
        )
        self.state.bids[bid.fid] = bid
        if key:
            self.state.idempotent_bids[key] = bid.fid
        for volume in volumes:
            volume.bids.append(bid.fid)
        return FakeResponse(201, bid.as_api())

    def _check_ssh_keys(self, project: str, key_fids: list[str]) -> None:
        """Every key must exist; every key the project marks ``required`` must be given."""
        for key_fid in key_fids:
            if key_fid not in self.state.ssh_keys:
                raise ApiError(404, f"SSH key {key_fid!r} not found")
        required = [
            fid
            for fid, key in self.state.ssh_keys.items()
            if key["project"] == project and key["required"] and fid not in key_fids
        ]
        if required:
            raise ApiError(
                400, f"SSH keys required by the project are missing: {', '.join(sorted(required))}"
            )
        if not key_fids:
            raise ApiError(400, "No SSH keys given: a bid needs at least one SSH key")

    def _bid(self, fid: str) -> FakeBid:
        bid = self.state.bids.get(fid)
        if bid is None or not bid.shown(self.settings.bid_visibility_delay):
            raise ApiError(404, f"Bid {fid!r} not found")
        return bid

    def get_bid(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        return FakeResponse(200, self._bid(params["bid_fid"]).as_api())

    def cancel_bid(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        self.lifecycle.cancel(self._bid(params["bid_fid"]))
        return FakeResponse(204)
