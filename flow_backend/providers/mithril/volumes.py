"""Mithril volumes by name: list, create on first use, delete."""

from __future__ import annotations

from flow_backend.errors import ResourceNotFoundError
from flow_backend.providers.base import VolumeInfo
from flow_backend.providers.mithril.api import Auction, MithrilClient
from flow_backend.providers.mithril.lookup import volume_fid

__all__ = ["create_volume", "delete_volume", "first_region", "list_volumes"]


def first_region(auctions: list[Auction]) -> str:
    """A region to put a volume in when none is configured (the first offered, by name)."""
    return sorted({a.region for a in auctions})[0] if auctions else "us-central1-a"


def list_volumes(client: MithrilClient, project: str, region: str | None) -> list[VolumeInfo]:
    """The project's volumes (of one region when given)."""
    return [
        VolumeInfo(v.name, float(v.capacity_gb), v.region)
        for v in client.list_volumes(project, region=region)
    ]


def create_volume(
    client: MithrilClient, project: str, region: str, name: str, size_gb: float
) -> VolumeInfo:
    """The volume named ``name`` in ``region``, created when it does not exist yet."""
    fid = volume_fid(client, project, region, name, size_gb)
    volume = next(v for v in client.list_volumes(project, region=region) if v.fid == fid)
    return VolumeInfo(volume.name, float(volume.capacity_gb), volume.region)


def delete_volume(client: MithrilClient, project: str, region: str | None, name: str) -> None:
    """Delete every volume named ``name`` (in ``region`` when given).

    Raises:
        ResourceNotFoundError: No volume has that name.
    """
    matching = [v for v in client.list_volumes(project, region=region) if v.name == name]
    if not matching:
        raise ResourceNotFoundError(
            f"No Mithril volume named {name!r}",
            field="name",
            value=name,
            hint="List them with `flow volumes list`",
        )
    for volume in matching:
        client.delete_volume(volume.fid)
