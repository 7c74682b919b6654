"""Volume names are unique per Mithril project, not per region: a task goes where its volume is.

Only bids are placed here (no instance is fed over SSH), so each test is a few API calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from mithril_helpers import settings_for
from sshd import SSHServer

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.providers.mithril import MithrilProvider
from flow_backend.providers.mithril.api import CreateVolumeRequest, MithrilClient
from flow_backend.providers.mithril.api.models import Volume
from flow_backend.task_config import TaskConfig, VolumeSpec
from flow_backend.testing import FakeMithril

A100 = "a100-80gb.sxm.1x"
HOME = "eu-central1-a"  # where `flow volumes create` puts a volume: the first region by name
CHEAP = "us-central2-a"


@pytest.fixture
def provider(fake: FakeMithril, sshd: SSHServer, tmp_path: Path) -> Iterator[MithrilProvider]:
    """A provider on ``fake`` whose A100s are cheapest in ``CHEAP``."""
    fake.set_spot_price(A100, 1.00, region=CHEAP)  # 1.60 elsewhere
    with closing(MithrilProvider(settings_for(fake, sshd, tmp_path / "home"))) as made:
        yield made


def using_data(**fields: Any) -> TaskConfig:
    return TaskConfig(
        command="true",
        instance_type=A100,
        volumes=[VolumeSpec(name="data", size_gb=10)],
        upload_code=False,
        **fields,
    )


def test_a_task_with_an_existing_volume_runs_in_its_region_not_the_cheapest(
    provider: MithrilProvider, fake: FakeMithril
) -> None:
    data = provider.create_volume("data", 10)
    assert data.location == HOME
    assert provider.create_volume("data", 10) == data  # the name is taken: the same volume
    without = TaskConfig(command="true", instance_type=A100, upload_code=False)
    assert provider.limit_price_per_hour(without) == 1.25  # CHEAP's spot price × 1.25

    assert provider.limit_price_per_hour(using_data()) == 2.0  # HOME's 1.60 × 1.25
    record = provider.submit(using_data())
    bid = fake.bid(record.task_id)
    assert bid["region"] == HOME
    assert [(v.name, v.region) for v in fake.state.volumes.values()] == [("data", HOME)]
    assert bid["launch_specification"]["volumes"] == list(fake.state.volumes)
    assert fake.wait_until(lambda: fake.shows(record.task_id), 10)  # reads lag a new bid
    provider.client.cancel_bid(record.task_id)

    with pytest.raises(ValidationError) as caught:  # a region asked for elsewhere: one clear error
        provider.submit(using_data(region=CHEAP))
    assert caught.value.field == "region" and caught.value.value == CHEAP
    assert f"'data' is in region {HOME}" in str(caught.value)
    assert len(fake.bids()) == 1 and len(fake.state.volumes) == 1


def test_volumes_in_other_regions_than_asked_are_one_clear_error(
    provider: MithrilProvider, fake: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    provider.create_volume("data", 10)
    settings = settings_for(fake, sshd, tmp_path / "home").model_copy(
        update={"mithril_region": CHEAP}
    )
    with closing(MithrilProvider(settings)) as pinned:
        with pytest.raises(ValidationError, match=f"'data' is in region {HOME}, not in {CHEAP}"):
            pinned.create_volume("data", 10)  # `flow volumes create` with mithril_region set
        with pytest.raises(ValidationError) as caught:
            pinned.submit(using_data())
        assert caught.value.field == "mithril_region"
    provider.client.create_volume(
        CreateVolumeRequest(
            name="other", project=fake.project_fid, disk_interface="Block", region=CHEAP, size_gb=1
        )
    )
    two = TaskConfig(
        command="true",
        instance_type=A100,
        volumes=[VolumeSpec(name="data"), VolumeSpec(name="other")],
        upload_code=False,
    )
    with pytest.raises(ValidationError, match=f"'data' .{HOME}. and 'other' .{CHEAP}. are in"):
        provider.submit(two)
    assert fake.bids() == [] and len(fake.state.volumes) == 2


def test_no_offer_in_the_volumes_region_is_one_clear_error(
    provider: MithrilProvider, fake: FakeMithril
) -> None:
    fake.withdraw_offer(A100, HOME)  # the other types are still offered there
    assert provider.create_volume("data", 10).location == HOME
    for attempt in (provider.limit_price_per_hour, provider.submit):
        with pytest.raises(ResourceNotFoundError) as caught:
            attempt(using_data())
        message = str(caught.value)
        assert caught.value.field == "instance_type"
        assert f"no '{A100}' in region {HOME}, where volume 'data' is" in message
        assert "Pick an instance type offered in" in message
    assert fake.bids() == [] and len(fake.state.volumes) == 1


class Racing(MithrilClient):
    """A client that loses the race for a new volume: between its listing and its create,
    another caller (a parallel sweep job) creates the name in ``region``."""

    def __init__(self, fake: FakeMithril, region: str) -> None:
        super().__init__(fake.api_key, fake.url)
        self.fake, self.region = fake, region

    def create_volume(self, request: CreateVolumeRequest) -> Volume:
        if not self.fake.state.volumes:
            with MithrilClient(self.fake.api_key, self.fake.url) as other:
                other.create_volume(request.model_copy(update={"region": self.region}))
        return super().create_volume(request)


@pytest.mark.parametrize("racer_region", [CHEAP, HOME])
def test_a_volume_created_meanwhile_is_used_never_a_second_empty_one(
    fake: FakeMithril, sshd: SSHServer, tmp_path: Path, racer_region: str
) -> None:
    fake.set_spot_price(A100, 1.00, region=CHEAP)
    settings = settings_for(fake, sshd, tmp_path / "home")
    with closing(MithrilProvider(settings, client=Racing(fake, racer_region))) as provider:
        if racer_region == CHEAP:  # made where the task goes: the task mounts it
            record = provider.submit(using_data())
            bid = fake.bid(record.task_id)
            assert bid["region"] == CHEAP
            assert bid["launch_specification"]["volumes"] == list(fake.state.volumes)
            assert fake.wait_until(lambda: fake.shows(record.task_id), 10)  # reads lag
            provider.client.cancel_bid(record.task_id)
        else:  # made elsewhere: one clear error, not a bid without the data
            with pytest.raises(
                ValidationError, match=f"'data' is in region {HOME}, not in {CHEAP}"
            ):
                provider.submit(using_data())
            assert fake.bids() == []
    assert [(v.name, v.region) for v in fake.state.volumes.values()] == [("data", racer_region)]
    assert fake.requests_to("/v2/volumes", "POST") == 2  # the racer's, then our 409
