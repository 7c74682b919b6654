"""The fake's volumes: list, create, delete, and which a new bid may attach."""

from __future__ import annotations

from datetime import UTC, datetime

from flow_backend.providers.mithril.api.models import CreateVolumeRequest
from flow_backend.testing.fake_http_types import ApiError, FakeRequest, FakeResponse, QueryReader
from flow_backend.testing.fake_route_base import Handler, RouteGroup, parse_body
from flow_backend.testing.fake_state import FakeVolume, new_fid

__all__ = ["VolumeRoutes"]


class VolumeRoutes(RouteGroup):
    """The fake's volumes: list, create, delete, and which a new bid may attach."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v2/volumes", self.list_volumes),
            ("POST", "/v2/volumes", self.create_volume),
            ("DELETE", "/v2/volumes/{volume_fid}", self.delete_volume),
        ]

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
        for volume in self.state.volumes.values():  # names are unique per project, not region
            if (volume.project, volume.name) == (body.project, body.name) and (
                volume.deleted_at is None
            ):
                raise ApiError(
                    409, f"A volume named {body.name!r} already exists in {volume.region}"
                )
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

    def bid_volumes(self, region: str, volume_fids: list[str], quantity: int) -> list[FakeVolume]:
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
