"""The endpoints of the fake Mithril: what each one checks and answers, following ``openapi.json``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, get_args

import pydantic

from flow_backend.providers.mithril.api.models import (
    BidStatus,
    CreateBidRequest,
    CreateSshKeyRequest,
    CreateVolumeRequest,
    InstanceStatus,
)
from flow_backend.testing.fake_http_types import ApiError, FakeRequest, FakeResponse, QueryReader
from flow_backend.testing.fake_lifecycle import Lifecycle
from flow_backend.testing.fake_paging import page_of
from flow_backend.testing.fake_state import FakeBid, FakeVolume, iso, new_fid

__all__ = ["BID_STATUSES", "INSTANCE_STATUSES", "Router"]

#: The API's name rule for bids (the SDK's ``TASK_NAME_PATTERN``).
BID_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# The spec's enums, as the client's models spell them.
BID_STATUSES: tuple[str, ...] = get_args(BidStatus)
INSTANCE_STATUSES: tuple[str, ...] = get_args(InstanceStatus)

Handler = Callable[[FakeRequest, dict[str, str]], FakeResponse]


def parse_body(request: FakeRequest, model: type[pydantic.BaseModel]) -> Any:
    """Validate a JSON body like FastAPI: 422 with ``loc`` starting at ``"body"``."""
    if request.body_error is not None:
        raise ApiError(
            422,
            [
                {
                    "loc": ["body"],
                    "msg": f"JSON decode error: {request.body_error}",
                    "type": "json_invalid",
                }
            ],
        )
    if request.body is None:
        raise ApiError(422, [{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    try:
        return model.model_validate(request.body)
    except pydantic.ValidationError as error:
        detail = [
            {"loc": ["body", *item["loc"]], "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False)
        ]
        raise ApiError(422, detail) from None


class Router:
    """Maps ``(method, path)`` to a handler; each handler runs under the state lock."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.state = lifecycle.state
        self.settings = lifecycle.settings
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        add = self._add
        add("GET", "/v2/projects", self.list_projects)
        add("GET", "/v2/instance-types", self.list_instance_types)
        add("GET", "/v2/spot/availability", self.list_availability)
        add("GET", "/v2/pricing/current", self.current_prices)
        add("GET", "/v2/ssh-keys", self.list_ssh_keys)
        add("POST", "/v2/ssh-keys", self.create_ssh_key)
        add("GET", "/v2/volumes", self.list_volumes)
        add("POST", "/v2/volumes", self.create_volume)
        add("DELETE", "/v2/volumes/{volume_fid}", self.delete_volume)
        add("GET", "/v2/spot/bids", self.list_bids)
        add("POST", "/v2/spot/bids", self.create_bid)
        add("GET", "/v2/spot/bids/{bid_fid}", self.get_bid)
        add("DELETE", "/v2/spot/bids/{bid_fid}", self.cancel_bid)
        add("GET", "/v2/instances", self.list_instances)

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

    # -- helpers ----------------------------------------------------------------------------
    def _project(self, fid: str) -> None:
        if fid not in self.state.projects:
            raise ApiError(404, f"Project {fid!r} not found")

    def _region(self, region: str) -> None:
        if region not in self.state.regions:
            raise ApiError(404, f"Region {region!r} not found")

    # -- account ----------------------------------------------------------------------------
    def list_projects(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        return FakeResponse(200, list(self.state.projects.values()))

    def list_ssh_keys(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        query = QueryReader(request.query)
        project = query.text("project", required=True)
        query.raise_problems()
        keys = [key for key in self.state.ssh_keys.values() if key["project"] == project]
        return FakeResponse(
            200, [{k: v for k, v in key.items() if k != "private_key"} for key in keys]
        )

    def create_ssh_key(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        body = parse_body(request, CreateSshKeyRequest)
        self._project(body.project)
        private_key = None
        public_key = body.public_key
        if not public_key:
            public_key, private_key = _generate_key_pair()
        key = {
            "fid": new_fid("sshkey"),
            "name": body.name,
            "project": body.project,
            "public_key": public_key,
            "created_at": iso(datetime.now(UTC)),
            "required": body.required,
        }
        self.state.ssh_keys[key["fid"]] = key
        return FakeResponse(201, {**key, "private_key": private_key})

    # -- catalog and market -----------------------------------------------------------------
    def list_instance_types(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        return FakeResponse(200, [it.as_api() for it in self.state.instance_types])

    def list_availability(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        auctions = []
        for it in self.state.instance_types:
            for region in self.state.regions:
                if (it.fid, region) not in self.state.capacity:
                    continue
                allocated = [
                    bid.limit_price
                    for bid in self.state.bids.values()
                    if bid.status == "Allocated"
                    and bid.instance_type == it.fid
                    and bid.region == region
                ]
                price = max(
                    self.state.spot_prices.get((it.fid, region), it.spot_price),
                    self.settings.price_floor,
                )
                auctions.append(
                    {
                        "fid": f"auc_{it.fid[3:]}{self.state.regions.index(region)}",
                        "instance_type": it.fid,
                        "region": region,
                        "capacity": self.state.free_capacity(it.fid, region),
                        "last_instance_price": f"${price:.2f}",
                        "lowest_allocated_price": f"${min(allocated):.2f}" if allocated else None,
                        "adjustable_memory": False,
                        "default_image_version": None,
                    }
                )
        return FakeResponse(200, auctions)

    def current_prices(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        query = QueryReader(request.query)
        instance_type = query.text("instance_type", required=True)
        region = query.text("region")
        query.integer("instance_quantity", low=1, high=256, default=1)
        query.raise_problems()
        assert instance_type is not None
        it = self.state.type_by_fid(instance_type)
        if it is None:
            raise ApiError(404, f"Instance type {instance_type!r} not found")
        regions = [region] if region else list(self.state.regions)
        if region:
            self._region(region)
        prices = [
            max(
                self.state.spot_prices.get((it.fid, name), it.spot_price), self.settings.price_floor
            )
            for name in regions
        ]
        spot = min(prices)
        return FakeResponse(
            200,
            {
                "spot_price_cents": round(spot * 100),
                "reserved_price_cents": round(spot * 150),
                "minimum_price_cents": round(
                    min(self.lifecycle.minimum_price(it.fid, name) for name in regions) * 100
                ),
                "lowest_allocated_bid_cents": None,
                "dynamic_win_price_cents": round(spot * 100),
                "available_capacity": sum(
                    self.state.free_capacity(it.fid, name) for name in regions
                ),
                "total_capacity": sum(
                    self.state.capacity.get((it.fid, name), 0) for name in regions
                ),
            },
        )

    # -- volumes ----------------------------------------------------------------------------
    def list_volumes(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        query = QueryReader(request.query)
        project = query.text("project", required=True)
        region = query.text("region")
        include_deleted = query.boolean("include_deleted")
        query.raise_problems()
        volumes = [
            volume.as_api()
            for volume in self.state.volumes.values()
            if volume.project == project
            and (region is None or volume.region == region)
            and (include_deleted or volume.deleted_at is None)
        ]
        return FakeResponse(200, volumes)

    def create_volume(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        body = parse_body(request, CreateVolumeRequest)
        self._project(body.project)
        self._region(body.region)
        for volume in self.state.volumes.values():
            if (volume.project, volume.region, volume.name) == (
                body.project,
                body.region,
                body.name,
            ) and (volume.deleted_at is None):
                raise ApiError(409, f"A volume named {body.name!r} already exists in {body.region}")
        volume = FakeVolume(
            fid=new_fid("vol"),
            name=body.name,
            region=body.region,
            project=body.project,
            capacity_gb=body.size_gb,
            interface=body.disk_interface,
        )
        self.state.volumes[volume.fid] = volume
        return FakeResponse(201, volume.as_api())

    def delete_volume(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        volume = self.state.volumes.get(params["volume_fid"])
        if volume is None or volume.deleted_at is not None:
            raise ApiError(404, f"Volume {params['volume_fid']!r} not found")
        if volume.bids:
            raise ApiError(
                409, f"Volume {volume.fid} is attached to bid(s) {', '.join(volume.bids)}"
            )
        volume.deleted_at = datetime.now(UTC)
        return FakeResponse(204)

    # -- bids ----------------------------------------------------------------------------------
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
            if all(value is None or getattr(bid, key) == value for key, value in filters.items())
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
        volumes = self._bid_volumes(body.region, spec.volumes, body.instance_quantity)
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

    def _bid_volumes(self, region: str, volume_fids: list[str], quantity: int) -> list[FakeVolume]:
        """The volumes of a new bid; a Block volume attaches to one instance at a time."""
        volumes = []
        for volume_fid in volume_fids:
            volume = self.state.volumes.get(volume_fid)
            if volume is None or volume.deleted_at is not None:
                raise ApiError(404, f"Volume {volume_fid!r} not found")
            if volume.region != region:
                raise ApiError(400, f"Volume {volume_fid} is in {volume.region}, not in {region}")
            if volume.interface == "Block" and (volume.bids or quantity > 1):
                raise ApiError(
                    400,
                    f"Block volume {volume_fid} attaches to one instance at a time (attached to "
                    f"{', '.join(volume.bids) or 'none'}, {quantity} instance(s) asked); "
                    "use a File volume to share it",
                )
            volumes.append(volume)
        return volumes

    def _bid(self, fid: str) -> FakeBid:
        bid = self.state.bids.get(fid)
        if bid is None:
            raise ApiError(404, f"Bid {fid!r} not found")
        return bid

    def get_bid(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        return FakeResponse(200, self._bid(params["bid_fid"]).as_api())

    def cancel_bid(self, request: FakeRequest, params: dict[str, str]) -> FakeResponse:
        self.lifecycle.cancel(self._bid(params["bid_fid"]))
        return FakeResponse(204)

    # -- instances ----------------------------------------------------------------------------
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


def _generate_key_pair() -> tuple[str, str]:
    """A fresh RSA pair (OpenSSH public, PEM private), as the API makes when no key is given."""
    import io

    import paramiko

    key = paramiko.RSAKey.generate(2048)
    private = io.StringIO()
    key.write_private_key(private)
    return f"{key.get_name()} {key.get_base64()}", private.getvalue()
