"""The client against the fake over real HTTP: every endpoint a task uses, with paging."""

from __future__ import annotations

import pytest
from mithril_helpers import REGION, bid_request, placed

from flow_backend.errors import ConflictError, ResourceNotFoundError, ValidationError
from flow_backend.providers.mithril.api import (
    CreateSshKeyRequest,
    CreateVolumeRequest,
    LaunchSpecification,
    MithrilClient,
)
from flow_backend.testing import FakeMithril


def test_projects_instance_types_availability_and_prices(
    client: MithrilClient, fake: FakeMithril
) -> None:
    projects = client.list_projects()
    assert [(p.fid, p.name) for p in projects] == [(fake.project_fid, "default")]

    types = {it.name: it for it in client.list_instance_types()}
    assert types["a100-80gb.sxm.8x"].num_gpus == 8
    assert types["h100-80gb.sxm.8x"].gpu_type == "H100"
    assert all(it.fid.startswith("it_") for it in types.values())

    a100 = types["a100-80gb.sxm.1x"].fid
    fake.set_spot_price("a100-80gb.sxm.1x", 1.25, region=REGION)
    auctions = [a for a in client.list_availability() if a.instance_type == a100]
    assert {a.region for a in auctions} == {"us-central1-a", "us-central2-a", "eu-central1-a"}
    here = next(a for a in auctions if a.region == REGION)
    assert here.last_instance_price == 1.25  # parsed from "$1.25"
    assert here.capacity == 256

    prices = client.current_prices(a100, region=REGION)
    assert prices.spot_price_cents == 125
    assert prices.available_capacity == 256


def test_ssh_keys_registered_and_generated(client: MithrilClient, fake: FakeMithril) -> None:
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxv test@example"
    created = client.create_ssh_key(
        CreateSshKeyRequest(project=fake.project_fid, name="laptop", public_key=public)
    )
    assert created.fid.startswith("sshkey_") and created.public_key == public
    assert created.private_key is None
    generated = client.create_ssh_key(CreateSshKeyRequest(project=fake.project_fid, name="gen"))
    assert generated.private_key and "PRIVATE KEY" in generated.private_key
    assert "PRIVATE" not in repr(generated)  # the private key stays out of reprs
    listed = client.list_ssh_keys(fake.project_fid)
    assert {key.name for key in listed} == {"laptop", "gen", "org-admin"}  # + the required one


def test_volume_create_list_delete(client: MithrilClient, fake: FakeMithril) -> None:
    request = CreateVolumeRequest(
        name="training-data",
        project=fake.project_fid,
        disk_interface="Block",
        region=REGION,
        size_gb=50,
    )
    volume = client.create_volume(request)
    assert volume.fid.startswith("vol_") and volume.capacity_gb == 50
    assert [v.name for v in client.list_volumes(fake.project_fid)] == ["training-data"]
    assert client.list_volumes(fake.project_fid, region="eu-central1-a") == []

    with pytest.raises(ConflictError, match="already exists"):
        client.create_volume(request)
    # names are unique per project, not per region: the name is taken in every region
    elsewhere = request.model_copy(update={"region": "eu-central1-a"})
    with pytest.raises(ConflictError, match=f"HTTP 409.*already exists in {REGION}"):
        client.create_volume(elsewhere)
    assert [v.region for v in client.list_volumes(fake.project_fid)] == [REGION]

    client.delete_volume(volume.fid)
    assert client.create_volume(elsewhere).region == "eu-central1-a"  # a deleted name is free
    client.delete_volume(client.list_volumes(fake.project_fid)[0].fid)
    assert client.list_volumes(fake.project_fid) == []
    with pytest.raises(ResourceNotFoundError, match=volume.fid):
        client.delete_volume(volume.fid)


def test_volume_attached_to_a_live_bid_cannot_be_deleted(
    client: MithrilClient, fake: FakeMithril
) -> None:
    volume = client.create_volume(
        CreateVolumeRequest(
            name="ckpt", project=fake.project_fid, disk_interface="Block", region=REGION, size_gb=10
        )
    )
    bid = placed(
        client,
        fake,
        bid_request(fake, launch_specification=LaunchSpecification(volumes=[volume.fid])),
    )
    with pytest.raises(ValidationError, match="attached"):
        client.delete_volume(volume.fid)
    client.cancel_bid(bid.fid)
    client.delete_volume(volume.fid)


def test_bid_create_get_cancel_and_instances(client: MithrilClient, fake: FakeMithril) -> None:
    fake.settings.boot_delay = 100.0  # a quarter of it STATUS_NEW, then the spec's order
    bid = placed(client, fake, bid_request(fake, limit_price=2.5))
    assert bid.status == "Open" and bid.limit_price == 2.5 and bid.fid.startswith("bid_")
    assert fake.wait_until(lambda: client.get_bid(bid.fid).status == "Allocated", timeout=20)
    (booting,) = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
    assert booting.status == "STATUS_NEW"
    fake.settings.boot_delay = 0.1

    def running() -> bool:
        instances = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
        return bool(instances) and instances[0].status == "STATUS_RUNNING"

    assert fake.wait_until(running, timeout=20)
    (instance,) = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
    assert instance.bid == bid.fid and instance.private_ip == "127.0.0.1"
    assert client.get_bid(bid.fid).instances == [instance.fid]

    fake.settings.stop_delay = 100.0
    client.cancel_bid(bid.fid)
    client.cancel_bid(bid.fid)  # cancelling twice is harmless
    assert client.get_bid(bid.fid).status == "Terminated"
    assert client.get_bid(bid.fid).deactivated_at is not None
    (ended,) = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
    assert ended.status == "STATUS_STOPPING"  # on its way out, no longer billing
    assert fake.billing_instances() == []
    assert client.list_instances(fake.project_fid, statuses=["STATUS_RUNNING"]) == []
    fake.settings.stop_delay = 0.0

    def terminated() -> bool:
        (instance,) = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
        return instance.status == "STATUS_TERMINATED"

    assert fake.wait_until(terminated, timeout=20)


def test_bid_listing_filters_and_pages(client: MithrilClient, fake: FakeMithril) -> None:
    created = [client.create_bid(bid_request(fake, name=f"hf-abc-{i}")) for i in range(7)]
    assert fake.wait_until(lambda: fake.shows(created[-1].fid), timeout=10)  # reads lag
    fake.reset_request_counts()
    listed = client.list_bids(project=fake.project_fid, page_size=3)
    assert [b.fid for b in listed] == [b.fid for b in reversed(created)]  # newest first
    assert fake.requests_to("/v2/spot/bids", "GET") == 3  # pages of 3, 3 and 1

    oldest_first = client.list_bids(project=fake.project_fid, newest_first=False, page_size=100)
    assert [b.fid for b in oldest_first] == [b.fid for b in created]
    assert [b.name for b in client.list_bids(name="hf-abc-4")] == ["hf-abc-4"]

    client.cancel_bid(created[0].fid)
    terminated = client.list_bids(project=fake.project_fid, status="Terminated")
    assert [b.fid for b in terminated] == [created[0].fid]
    # stopping the iteration early stops fetching pages
    fake.reset_request_counts()
    first = next(client.iter_bids(project=fake.project_fid, page_size=2))
    assert first.fid == created[-1].fid
    assert fake.requests_to("/v2/spot/bids", "GET") == 1


def test_instance_listing_pages(client: MithrilClient, fake: FakeMithril) -> None:
    bid = placed(client, fake, bid_request(fake, instance_quantity=5))
    assert fake.wait_until(lambda: len(fake.instances_of(bid.fid)) == 5, timeout=20)
    fake.reset_request_counts()
    instances = client.list_instances(fake.project_fid, bid_fids=[bid.fid], page_size=2)
    assert sorted(i.fid for i in instances) == sorted(client.get_bid(bid.fid).instances)
    assert fake.requests_to("/v2/instances") == 3
    client.cancel_bid(bid.fid)
