"""From a ``TaskConfig`` to a spot bid request (and the in-memory plan for feeding its nodes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from flow_backend.errors import ResourceNotFoundError
from flow_backend.providers.mithril.account import Account, choose_region
from flow_backend.providers.mithril.api import Bid, CreateBidRequest, LaunchSpecification
from flow_backend.providers.mithril.lookup import volume_fid
from flow_backend.providers.mithril.nodes import LaunchPlan
from flow_backend.providers.mithril.pricing import default_limit_price
from flow_backend.providers.mithril.startup_script import render_startup_script

if TYPE_CHECKING:
    from flow_backend.task_config import TaskConfig

__all__ = ["build_bid_request", "launch_plan"]


def build_bid_request(
    config: TaskConfig, account: Account, region_setting: str | None, remote_root: str
) -> CreateBidRequest:
    """The bid for ``config``: type by catalog name, region, limit price, volumes, script, key.

    The script is rendered first, so a command too long for it fails before anything is created.

    Raises:
        ValidationError: The startup script would be too long.
        ResourceNotFoundError: Mithril offers no such instance type, or no market for it.
    """
    instance = config.instance
    script = render_startup_script(
        config.name,
        config.command_string,
        image=config.image,
        mount_paths=[spec.resolved_mount_path for spec in config.volumes],
        root=remote_root,
        max_run_seconds=(
            max(1, round(config.max_run_time_hours * 3600)) if config.max_run_time_hours else None
        ),
    )
    api_type = account.instance_type(instance.name)
    project = account.project_fid
    region = config.region or region_setting
    if region is None:
        region = choose_region(account.availability(), api_type.fid, config.num_instances)
        if region is None:
            raise ResourceNotFoundError(
                f"Mithril has no spot market for instance type {instance.name!r}",
                field="instance_type",
                value=instance.name,
                hint="Pick another instance_type (`flow instance-types`)",
            )
    volumes = [
        volume_fid(account.client, project, region, spec.name, spec.size_gb)
        for spec in config.volumes
    ]
    return CreateBidRequest(
        project=project,
        region=region,
        instance_type=api_type.fid,
        limit_price=config.max_price_per_hour or default_limit_price(instance),
        instance_quantity=config.num_instances,
        name=config.name,
        launch_specification=LaunchSpecification(
            volumes=volumes, ssh_keys=[account.ssh_key_fid], startup_script=script
        ),
    )


def launch_plan(config: TaskConfig, bid: Bid) -> LaunchPlan:
    """What this process keeps in memory to start the bid's nodes (env may hold secrets)."""
    env = dict(config.env)
    env.update({spec.env_var: spec.resolved_mount_path for spec in config.volumes})
    code_root = None
    if config.upload_code:
        code_root = str(Path(config.code_root or os.getcwd()).expanduser().resolve())
    return LaunchPlan(
        task_id=bid.fid,
        name=bid.name,
        instance_type=config.instance.name,
        env=env,
        working_dir=config.working_dir,
        code_root=code_root,
    )
