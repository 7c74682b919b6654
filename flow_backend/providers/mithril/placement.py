"""Where a task runs: its instance type, the market (region and spot price) and its volumes.

A volume lives in one region and its name is unique per project, so a task that names an existing
volume runs in that volume's region, even when another region is cheaper: a bid elsewhere could
not mount it, and creating the name there again is refused (409). New volumes are created where
the task runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.providers.mithril.account import Account, choose_offer
from flow_backend.providers.mithril.api import Auction
from flow_backend.providers.mithril.api.models import InstanceType, Volume

if TYPE_CHECKING:
    from flow_backend.task_config import TaskConfig

__all__ = ["Placement", "choose_type", "place"]


@dataclass(frozen=True)
class Placement:
    """What a task's bid would use now.

    Attributes:
        types: The API types that may run the task (several ids may share one display name).
        offer: The chosen market, or None when none offers the types (where asked).
        volumes: The project's existing volumes by name (listed only when the task has volumes).
    """

    types: list[InstanceType]
    offer: Auction | None
    volumes: dict[str, Volume] = field(default_factory=dict)


def choose_type(config: TaskConfig, account: Account) -> list[InstanceType]:
    """The API types that may run ``config`` (several when they share a display name).

    Raises:
        ValidationError: No instance type and no ``min_gpu_memory_gb`` (never a silent pick).
        ResourceNotFoundError: Mithril offers nothing that fits.
    """
    offered = ", ".join(account.offered_names())
    if config.instance_type is not None:
        return account.instance_types_named(config.instance_type)
    if config.min_gpu_memory_gb is not None:
        fitting = [
            it for it in account.instance_types() if it.gpu_memory_gb >= config.min_gpu_memory_gb
        ]
        if not fitting:
            raise ResourceNotFoundError(
                f"Mithril offers no GPU with min_gpu_memory_gb={config.min_gpu_memory_gb} GB",
                field="min_gpu_memory_gb",
                value=config.min_gpu_memory_gb,
                hint=f"Ask for less memory per GPU; Mithril offers: {offered}",
            )
        return fitting
    raise ValidationError(
        "no instance type given: Mithril has no default (each type costs dollars an hour)",
        field="instance_type",
        hint=f"Give one with -i / instance_type; Mithril offers: {offered} "
        "(`flow instance-types` shows prices)",
    )


def place(config: TaskConfig, account: Account, region_setting: str | None) -> Placement:
    """The types, market and volumes for ``config``: in its volumes' region when one exists.

    Args:
        config: The task.
        account: The Mithril account (catalog, market, client).
        region_setting: ``mithril_region``, used when ``config.region`` is unset.

    Raises:
        ValidationError: No instance type; existing volumes in two regions, or in another region
            than the one asked for.
        ResourceNotFoundError: No such instance type; or none offered in the region of an
            existing volume of the task.
    """
    types = choose_type(config, account)
    volumes: dict[str, Volume] = {}
    if config.volumes:
        volumes = {v.name: v for v in account.client.list_volumes(account.project_fid)}
    pin = _pinning_volume(config, volumes, region_setting)
    region = pin.region if pin else (config.region or region_setting)
    offer = choose_offer(
        account.availability(), {it.fid for it in types}, config.num_instances, region
    )
    if offer is None and pin is not None:
        wanted = config.instance_type or f"min_gpu_memory_gb={config.min_gpu_memory_gb}"
        raise ResourceNotFoundError(
            f"Mithril offers no {wanted!r} in region {pin.region}, where volume {pin.name!r} is "
            "(a task runs in the region of its volumes)",
            field="instance_type",
            value=wanted,
            hint=f"Pick an instance type offered in {pin.region} (`flow instance-types`), or use "
            "a volume of a new name (it is created where the task runs)",
        )
    return Placement(types, offer, volumes)


def _pinning_volume(
    config: TaskConfig, volumes: dict[str, Volume], region_setting: str | None
) -> Volume | None:
    """The first existing volume of the task (all of them in one region), or None.

    Raises:
        ValidationError: The task's existing volumes are in two regions, or not in the region
            asked for (``region`` or ``mithril_region``).
    """
    existing = [volumes[spec.name] for spec in config.volumes if spec.name in volumes]
    if not existing:
        return None
    pin = existing[0]
    other = next((v for v in existing if v.region != pin.region), None)
    if other is not None:
        raise ValidationError(
            f"volumes {pin.name!r} ({pin.region}) and {other.name!r} ({other.region}) are in "
            "different regions; a task runs in one region",
            field="volumes",
            value=[spec.name for spec in config.volumes],
            hint="Use volumes of one region (`flow volumes list` shows where each is)",
        )
    asked, setting = (
        (config.region, "region") if config.region else (region_setting, "mithril_region")
    )
    if asked and asked != pin.region:
        raise ValidationError(
            f"volume {pin.name!r} is in region {pin.region}, but {setting} asks for {asked} "
            "(a task runs in the region of its volumes; names are unique per project)",
            field=setting,
            value=asked,
            hint=f"Leave {setting} unset or set it to {pin.region}, or use a volume of a new name",
        )
    return pin
