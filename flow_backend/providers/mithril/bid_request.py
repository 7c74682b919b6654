"""From a ``TaskConfig`` to a spot bid request (and the in-memory plan for feeding its nodes).

Everything the real API would refuse is refused here first, with one clear error and before any
request that creates something: no instance type, a type Mithril does not offer, a name outside
the API's rule, a Block volume shared by several instances.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flow_backend.errors import FlowError, ResourceNotFoundError, ValidationError
from flow_backend.providers.mithril.account import Account
from flow_backend.providers.mithril.api import Bid, CreateBidRequest, LaunchSpecification
from flow_backend.providers.mithril.api.models import Volume
from flow_backend.providers.mithril.nodes import LaunchPlan
from flow_backend.providers.mithril.placement import place
from flow_backend.providers.mithril.pricing import limit_price
from flow_backend.providers.mithril.startup_script import render_startup_script
from flow_backend.providers.mithril.volume_script import VolumeMount
from flow_backend.providers.mithril.volumes import ensure_volume

if TYPE_CHECKING:
    from flow_backend.task_config import TaskConfig, VolumeSpec

__all__ = [
    "BID_NAME",
    "BidChoice",
    "bid_name",
    "build_bid_request",
    "clearer_refusal",
    "launch_plan",
    "volume_kinds",
]

#: The API's rule for bid names (the SDK's ``TASK_NAME_PATTERN``).
BID_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class BidChoice:
    """A bid ready to post, with what was chosen for it."""

    request: CreateBidRequest
    type_name: str
    spot_price: float


def bid_name(name: str) -> str:
    """``name`` as the API accepts it (lowercased).

    Raises:
        ValidationError: Even lowercased, it breaks the API's rule.
    """
    lowered = name.strip().lower()
    if not BID_NAME.match(lowered) or len(lowered) > 100:
        raise ValidationError(
            f"task name {name!r} is not a valid Mithril bid name",
            field="name",
            value=name,
            hint="Use lowercase letters, digits, '.', '_' and '-', starting with a letter or "
            "digit, at most 100 characters",
        )
    return lowered


def build_bid_request(
    config: TaskConfig, account: Account, region_setting: str | None, remote_root: str
) -> BidChoice:
    """The bid for ``config``: type, region and price from the live market, volumes, script, keys.

    The script is rendered first, so a command too long for it fails before anything is created.
    A task with an existing volume runs in that volume's region (see :func:`place`).

    Raises:
        ValidationError: Bad name, no instance type, a shared Block volume, a too long script,
            existing volumes outside the region asked for.
        ResourceNotFoundError: Mithril offers no such instance type, or no market for it (in
            the region of the task's existing volumes).
    """
    name = bid_name(config.name)
    # the command's length is checked before anything is created (the volumes' ids not known yet)
    _script(config, name, remote_root, [_placeholder(spec) for spec in config.volumes])
    placement = place(config, account, region_setting)
    types, offer = placement.types, placement.offer
    region = config.region or region_setting
    wanted = config.instance_type or f"min_gpu_memory_gb={config.min_gpu_memory_gb}"
    if offer is None:
        where = f" in region {region!r}" if region else ""
        raise ResourceNotFoundError(
            f"Mithril has no spot market for instance type {wanted!r}{where}",
            field="instance_type",
            value=wanted,
            hint="Pick another instance_type or region (`flow instance-types`)",
        )
    chosen = next(it for it in types if it.fid == offer.instance_type)
    project = account.project_fid
    volumes = _volumes(config, account, offer.region, placement.volumes)
    script = _script(config, name, remote_root, volumes)
    keys = list(dict.fromkeys([account.ssh_key_fid, *account.required_ssh_key_fids()]))
    request = CreateBidRequest(
        project=project,
        region=offer.region,
        instance_type=chosen.fid,
        limit_price=limit_price(offer.last_instance_price, config.max_price_per_hour),
        instance_quantity=config.num_instances,
        name=name,
        launch_specification=LaunchSpecification(
            volumes=[v.fid for v in volumes], ssh_keys=keys, startup_script=script
        ),
    )
    return BidChoice(request, chosen.name, offer.last_instance_price)


#: The API's rule for volume names (``CreateVolumeRequest.name`` in the spec).
VOLUME_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _script(config: TaskConfig, name: str, remote_root: str, volumes: list[VolumeMount]) -> str:
    return render_startup_script(
        name,
        config.command_string,
        image=config.image,
        volumes=volumes,
        root=remote_root,
        max_run_seconds=(
            max(1, round(config.max_run_time_hours * 3600)) if config.max_run_time_hours else None
        ),
    )


def _placeholder(spec: VolumeSpec) -> VolumeMount:
    """A volume as long as a real one in the script, before its id is known."""
    kind: Literal["Block", "File"] = "File" if spec.interface == "file" else "Block"
    return VolumeMount("vol_" + "x" * 24, spec.name, kind, spec.resolved_mount_path)


def volume_kinds(
    config: TaskConfig, existing: dict[str, Volume], tasks_at_once: int = 1
) -> dict[str, Literal["Block", "File"]]:
    """Each volume's kind (an existing volume keeps its own), after the checks the API would make.

    Args:
        config: The task (its volumes and ``num_instances``).
        existing: The project's volumes by name.
        tasks_at_once: How many tasks like ``config`` run at the same time (a sweep's parallelism).

    Raises:
        ValidationError: A name outside the API's rule, or a Block volume that several instances
            would share (it attaches to one instance at a time).
    """
    kinds: dict[str, Literal["Block", "File"]] = {}
    sharing = config.num_instances * tasks_at_once
    for spec in config.volumes:
        if not VOLUME_NAME.match(spec.name) or len(spec.name) > 64:
            raise ValidationError(
                f"volume name {spec.name!r} is not a valid Mithril volume name",
                field="volumes",
                value=spec.name,
                hint="Start with a letter; use lowercase letters, digits and inner dashes",
            )
        found = existing.get(spec.name)
        kind = found.interface if found else ("File" if spec.interface == "file" else "Block")
        if kind == "Block" and sharing > 1:
            who = (
                f"num_instances={config.num_instances}"
                if tasks_at_once == 1
                else f"{sharing} instances ({tasks_at_once} tasks at once × num_instances="
                f"{config.num_instances})"
            )
            raise ValidationError(
                f"volume {spec.name!r} is a Block volume, which attaches to one instance at a "
                f"time, but {who} would share it",
                field="volumes",
                value=spec.name,
                hint="Use a File volume for data several instances share (interface: file, a new "
                "name), or run one instance at a time",
            )
        kinds[spec.name] = kind
    return kinds


def _volumes(
    config: TaskConfig, account: Account, region: str, existing: dict[str, Volume]
) -> list[VolumeMount]:
    """The volumes as the bid mounts them, created in ``region`` when new (``existing``: the
    project's volumes by name); every check comes before anything is created (see
    :func:`volume_kinds`)."""
    if not config.volumes:
        return []
    kinds = volume_kinds(config, existing)
    listed = list(existing.values())
    mounts = []
    for spec in config.volumes:
        volume = ensure_volume(
            account.client,
            account.project_fid,
            region,
            spec.name,
            spec.size_gb,
            kinds[spec.name],
            listed=listed,
        )
        mounts.append(
            VolumeMount(volume.fid, spec.name, volume.interface, spec.resolved_mount_path)
        )
    return mounts


def launch_plan(config: TaskConfig, bid: Bid, type_name: str) -> LaunchPlan:
    """What this process keeps in memory to start the bid's nodes (env may hold secrets)."""
    env = dict(config.env)
    env.update({spec.env_var: spec.resolved_mount_path for spec in config.volumes})
    code_root = None
    if config.upload_code:
        code_root = str(Path(config.code_root or os.getcwd()).expanduser().resolve())
    return LaunchPlan(
        task_id=bid.fid,
        name=bid.name,
        instance_type=type_name,
        env=env,
        working_dir=config.working_dir,
        code_root=code_root,
    )


def clearer_refusal(error: ValidationError, choice: BidChoice) -> FlowError:
    """A refused limit price as one error that says which setting to change."""
    if "below minimum" not in str(error).lower():
        return error
    offered = choice.request.limit_price
    return ValidationError(
        f"Mithril refused the bid: its limit price ${offered:.2f}/h per instance is below the "
        f"minimum for {choice.type_name} (spot price now ${choice.spot_price:.2f}/h)",
        field="max_price_per_hour",
        value=offered,
        hint="Raise max_price_per_hour, or leave it unset: the default follows the spot price",
    )
