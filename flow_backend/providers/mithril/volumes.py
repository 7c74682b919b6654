"""Mithril volumes by name: list, find or create, delete.

Volume names are unique per project, not per region (the API answers 409 to a second ``data``
in another region). So a name means one volume wherever it is, a task that uses it runs in its
region (see :mod:`flow_backend.providers.mithril.placement`), and a create answered 409 means
another caller (a parallel sweep job) made the name since our listing: we list again and use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from flow_backend.errors import ConflictError, ResourceNotFoundError, ValidationError
from flow_backend.providers.base import VolumeInfo
from flow_backend.providers.mithril.api import Auction, CreateVolumeRequest, MithrilClient
from flow_backend.providers.mithril.api.models import Volume

__all__ = [
    "DEFAULT_VOLUME_GB",
    "create_volume",
    "delete_volume",
    "ensure_volume",
    "first_region",
    "list_volumes",
    "named",
]

logger = logging.getLogger(__name__)

DEFAULT_VOLUME_GB = 100


def first_region(auctions: list[Auction]) -> str:
    """A region to put a volume in when none is configured (the first offered, by name)."""
    return sorted({a.region for a in auctions})[0] if auctions else "us-central1-a"


def list_volumes(client: MithrilClient, project: str, region: str | None) -> list[VolumeInfo]:
    """The project's volumes (of one region when given)."""
    return [
        VolumeInfo(v.name, float(v.capacity_gb), v.region)
        for v in client.list_volumes(project, region=region)
    ]


def named(volumes: Iterable[Volume], name: str) -> Volume | None:
    """The volume called ``name`` among ``volumes`` (one at most: names are unique per project)."""
    return next((v for v in volumes if v.name == name), None)


def ensure_volume(
    client: MithrilClient,
    project: str,
    region: str,
    name: str,
    size_gb: float | None,
    interface: Literal["Block", "File"] = "Block",
    *,
    listed: list[Volume] | None = None,
    any_region: bool = False,
) -> Volume:
    """The project's volume named ``name``, created in ``region`` (``size_gb``, default 100) if new.

    A create answered 409 (another caller made the name since the listing) lists again and uses
    the volume that now exists; it is never a second, empty volume.

    Args:
        client: The API client.
        project: The project's ``proj_...`` id.
        region: Where the volume must be (and is created when new).
        name: The volume's name.
        size_gb: The size of a new volume.
        interface: The kind of a new volume (an existing one keeps its own).
        listed: The project's volumes as just listed (all regions); listed here when None.
        any_region: Accept an existing volume in another region (``region`` is only a default).

    Raises:
        ValidationError: The name is taken by a volume in another region (and ``any_region`` is
            false), or Mithril refused the create.
    """
    found = named(client.list_volumes(project) if listed is None else listed, name)
    if found is None:
        size = max(1, round(size_gb or DEFAULT_VOLUME_GB))
        request = CreateVolumeRequest(
            name=name, project=project, disk_interface=interface, region=region, size_gb=size
        )
        try:
            return client.create_volume(request)
        except ConflictError:
            found = named(client.list_volumes(project), name)
            if found is None:  # 409 for another reason: Mithril's own words
                raise
            logger.info("volume %r was created meanwhile (409); using %s", name, found.fid)
    if found.region != region and not any_region:
        raise ValidationError(
            f"volume {name!r} is in region {found.region}, not in {region} (volume names are "
            "unique per project, not per region)",
            field="volumes",
            value=name,
            hint=f"Use it where it is: leave region and mithril_region unset (a task then runs "
            f"in {found.region}) or set them to {found.region}; or pick another volume name",
        )
    return found


def create_volume(
    client: MithrilClient, project: str, region: str, name: str, size_gb: float, *, fixed: bool
) -> VolumeInfo:
    """The volume named ``name``, created in ``region`` when no volume of the project has the name.

    Args:
        fixed: ``region`` was configured (``mithril_region``): a volume of the name elsewhere is
            an error; otherwise it is that volume.
    """
    volume = ensure_volume(client, project, region, name, size_gb, any_region=not fixed)
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
