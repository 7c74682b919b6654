"""The fake answers like the real Mithril (as the official SDK and the spec record it) by default."""

from __future__ import annotations

import socket
from typing import Literal

import pytest
from mithril_helpers import REGION, bid_request, placed

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.providers.mithril.api import (
    CreateSshKeyRequest,
    CreateVolumeRequest,
    LaunchSpecification,
    MithrilClient,
)
from flow_backend.testing import FakeMithril


def test_the_catalog_holds_the_real_gpu_types_only(client: MithrilClient) -> None:
    types = client.list_instance_types()
    names = sorted({it.name for it in types})
    assert names == [
        "a100-80gb.sxm.1x",
        "a100-80gb.sxm.2x",
        "a100-80gb.sxm.4x",
        "a100-80gb.sxm.8x",
        "b200-192gb.8x",
        "h100-80gb.sxm.8x",
        "h200.8x",
    ]
    assert all(it.num_gpus >= 1 for it in types)  # no CPU-only, V100, A10 or A100 40GB type
    h100 = [it.fid for it in types if it.name == "h100-80gb.sxm.8x"]
    assert len(h100) == 2 and len(set(h100)) == 2  # two ids share one display name


def test_a_bid_without_the_projects_required_key_is_refused(
    client: MithrilClient, fake: FakeMithril
) -> None:
    own = client.create_ssh_key(
        CreateSshKeyRequest(
            project=fake.project_fid, name="laptop", public_key="ssh-ed25519 AAAAC3Nza me@laptop"
        )
    )
    spec = LaunchSpecification(ssh_keys=[own.fid])
    with pytest.raises(ValidationError, match="required by the project") as caught:
        client.create_bid(bid_request(fake, launch_specification=spec))
    assert (fake.required_ssh_key_fid or "?") in str(caught.value)
    assert fake.bids() == []


def test_bid_names_follow_the_apis_rule(client: MithrilClient, fake: FakeMithril) -> None:
    with pytest.raises(ValidationError, match="Invalid name 'Sweep_A'"):
        client.create_bid(bid_request(fake, name="Sweep_A"))
    assert client.create_bid(bid_request(fake, name="sweep_a.0-1")).name == "sweep_a.0-1"


def test_a_new_bid_answers_404_and_is_left_out_of_lists_for_a_moment(
    client: MithrilClient, fake: FakeMithril
) -> None:
    assert fake.settings.bid_visibility_delay > 0  # on by default, as on the real API
    fake.settings.bid_visibility_delay = 60.0
    bid = client.create_bid(bid_request(fake, name="unseen"))
    with pytest.raises(ResourceNotFoundError):
        client.get_bid(bid.fid)
    with pytest.raises(ResourceNotFoundError):
        client.cancel_bid(bid.fid)
    assert bid.fid not in [b.fid for b in client.iter_bids(project=fake.project_fid)]
    fake.settings.bid_visibility_delay = 0.0  # 0: seen at once
    assert client.get_bid(bid.fid).name == "unseen"
    assert bid.fid in [b.fid for b in client.iter_bids(project=fake.project_fid)]
    client.cancel_bid(bid.fid)


def test_a_bid_below_the_minimum_price_is_refused_with_a_message(
    client: MithrilClient, fake: FakeMithril
) -> None:
    with pytest.raises(ValidationError, match=r"below minimum.*\$0\.80"):
        client.create_bid(bid_request(fake, limit_price=0.5))  # spot $1.60, minimum half of it
    assert fake.bids() == []


def test_a_block_volume_attaches_to_one_bid_at_a_time(
    client: MithrilClient, fake: FakeMithril
) -> None:
    def volume(name: str, interface: Literal["Block", "File"]) -> str:
        request = CreateVolumeRequest(
            name=name, project=fake.project_fid, disk_interface=interface, region=REGION, size_gb=1
        )
        return client.create_volume(request).fid

    block, shared = volume("scratch", "Block"), volume("shared", "File")
    with_block = LaunchSpecification(volumes=[block])
    first = placed(client, fake, bid_request(fake, name="a", launch_specification=with_block))
    with pytest.raises(ValidationError, match="one instance at a time"):
        client.create_bid(bid_request(fake, name="b", launch_specification=with_block))
    with pytest.raises(ValidationError, match="one instance at a time"):  # nor two of one bid
        client.create_bid(
            bid_request(fake, name="c", instance_quantity=2, launch_specification=with_block)
        )
    with_file = LaunchSpecification(volumes=[shared])
    for name in ("d", "e"):  # a File volume is shared
        client.create_bid(bid_request(fake, name=name, launch_specification=with_file))
    client.cancel_bid(first.fid)  # detached once its bid ends
    client.create_bid(bid_request(fake, name="f", launch_specification=with_block))


def test_an_instance_reports_its_address_before_sshd_answers_and_addresses_are_reused(
    cloud: FakeMithril,
) -> None:
    cloud.settings.ssh_ready_delay = 1.5
    client = MithrilClient(cloud.api_key, cloud.url)

    def running_address(bid_fid: str) -> str:
        def ready() -> bool:
            found = cloud.instances_of(bid_fid)
            return bool(found) and found[0].status == "STATUS_RUNNING"

        assert cloud.wait_until(ready, timeout=20)
        address = cloud.instances_of(bid_fid)[0].ssh_destination
        assert address is not None
        return address

    bid = placed(client, cloud, bid_request(cloud, name="a"))
    address = running_address(bid.fid)
    port = int(address.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass  # booted, address known, sshd not answering yet
    assert cloud.wait_until(lambda: _answers(port), timeout=10)
    client.cancel_bid(bid.fid)
    assert not _answers(port)  # the instance is gone, its address with it
    again = placed(client, cloud, bid_request(cloud, name="b"))
    assert running_address(again.fid) == address  # a new instance on the old address
    client.cancel_bid(again.fid)
    client.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 2) as sock:
            sock.settimeout(2)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False
