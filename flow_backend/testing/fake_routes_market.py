"""The fake's catalog and market: instance types, spot availability, current prices."""

from __future__ import annotations

from flow_backend.testing.fake_http_types import ApiError, FakeRequest, FakeResponse, QueryReader
from flow_backend.testing.fake_route_base import Handler, RouteGroup

__all__ = ["MarketRoutes"]


class MarketRoutes(RouteGroup):
    """The fake's catalog and market: instance types, spot availability, current prices."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/instance-types", self.list_instance_types),
            ("GET", "/v2/spot/availability", self.list_availability),
            ("GET", "/v2/pricing/current", self.current_prices),
        ]

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
