"""Helpers shared by the Mithril tests (imported as a top-level module: tests have no packages)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from flow_backend.providers.mithril.api import (
    Bid,
    CreateBidRequest,
    LaunchSpecification,
    MithrilClient,
)
from flow_backend.settings import FlowSettings
from flow_backend.testing import FakeMithril

REGION = "us-central1-a"


def bid_request(fake: FakeMithril, name: str = "hf-sweep-0", **changes: object) -> CreateBidRequest:
    fields: dict[str, object] = {
        "project": fake.project_fid,
        "region": REGION,
        "instance_type": fake.instance_type_fid("a100-80gb.sxm.1x"),
        "limit_price": 2.0,
        "instance_quantity": 1,
        "name": name,
        "launch_specification": LaunchSpecification(),
    }
    fields.update(changes)
    spec = fields["launch_specification"]
    assert isinstance(spec, LaunchSpecification)
    if (
        not spec.ssh_keys and fake.required_ssh_key_fid
    ):  # the project's required key, as the API wants
        fields["launch_specification"] = spec.model_copy(
            update={"ssh_keys": [fake.required_ssh_key_fid]}
        )
    return CreateBidRequest(**fields)  # type: ignore[arg-type]


def placed(client: MithrilClient, fake: FakeMithril, request: CreateBidRequest) -> Bid:
    """Place a bid and wait until the API's reads show it (they lag a new bid, as on Mithril)."""
    bid = client.create_bid(request)
    assert fake.wait_until(lambda: fake.shows(bid.fid), timeout=10), "the new bid never showed"
    return bid


def settings_for(cloud: FakeMithril, sshd: Any, home: Path) -> FlowSettings:
    return FlowSettings(
        provider="mithril",
        home=home,
        mithril_api_key=SecretStr(cloud.api_key),
        mithril_api_url=cloud.url,
        ssh_key_path=sshd.key_path,
        poll_interval=0.2,
        # under tmp_path: set by the autouse ``remote_root`` fixture of conftest.py
        mithril_remote_root=os.environ["FLOW_MITHRIL_REMOTE_ROOT"],
    )


def require_real_volumes() -> None:
    """Skip (fail under CI) when the fake cannot attach volumes here (it needs root)."""
    import pytest

    from flow_backend.testing.fake_volumes import unsupported_reason

    reason = unsupported_reason()
    if reason is not None:
        message = f"volumes on fake instances: {reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
