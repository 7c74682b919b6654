"""Each fault the fake injects, and what the client (and the fake's market) do about it."""

from __future__ import annotations

import email.utils
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from mithril_helpers import REGION, bid_request, placed

from flow_backend.errors import ConflictError, ProviderError
from flow_backend.providers.mithril.api import LaunchSpecification, MithrilClient, RetryPolicy
from flow_backend.providers.mithril.api.transport import retry_after_seconds
from flow_backend.testing import FakeMithril


def test_5xx_is_retried_until_it_succeeds(
    client: MithrilClient, fake: FakeMithril, sleeps: list[float]
) -> None:
    fake.faults.fail_next(2, status=503)
    assert client.list_projects()
    assert fake.requests_to("/v2/projects") == 3
    assert len(sleeps) == 2 and all(0 <= s <= 0.05 for s in sleeps)  # jittered backoff, capped


def test_random_error_rate_is_absorbed_by_retries(client: MithrilClient, fake: FakeMithril) -> None:
    fake.faults.reseed(7)
    fake.faults.error_rate = 0.3
    for _ in range(15):
        assert len(client.list_instance_types()) == 8
    assert fake.requests_to("/v2/instance-types") > 15  # some requests failed and were retried


def test_429_waits_retry_after(
    client: MithrilClient, fake: FakeMithril, sleeps: list[float]
) -> None:
    fake.faults.rate_limit_next(2, retry_after=1.5)
    bid = client.create_bid(bid_request(fake))  # a 429 is retried even for POST
    assert bid.status == "Open"
    assert sleeps == [1.5, 1.5]
    assert len(fake.bids()) == 1


def test_a_5xx_waits_its_retry_after(
    client: MithrilClient, fake: FakeMithril, sleeps: list[float]
) -> None:
    fake.faults.fail_next(1, status=503, retry_after=2)
    assert client.list_projects()
    assert sleeps == [2.0]  # the server's wait, not the jittered backoff (at most 0.05 s here)
    assert fake.requests_to("/v2/projects") == 2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: retry now
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str, seconds: float | None) -> None:
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": header})) == seconds


def test_retry_after_as_a_future_http_date() -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    wait = retry_after_seconds(httpx.Response(429, headers={"Retry-After": later}))
    assert wait is not None and 80 < wait <= 90


@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_over_the_cap_gives_up_at_once(fake: FakeMithril, status: int) -> None:
    sleeps: list[float] = []
    fake.faults.fail_next(1, status=status, retry_after=120)
    with MithrilClient(fake.api_key, fake.url, sleep=sleeps.append) as api:  # cap: 60 s
        with pytest.raises(ProviderError) as caught:
            api.list_projects()
        assert sleeps == []  # no retry before the server said, no 120 s stall either
        assert fake.requests_to("/v2/projects") == 1
        assert "wait 120 s" in str(caught.value) and "not tried again" in str(caught.value)
        assert api.list_projects()  # nothing is left broken: the next call goes through


def test_latency_is_tolerated_and_timeouts_retried_for_reads(fake: FakeMithril) -> None:
    fake.faults.latency = 0.05
    sleeps: list[float] = []
    with MithrilClient(
        fake.api_key, fake.url, timeout=1.5, retry=RetryPolicy(max_attempts=3), sleep=sleeps.append
    ) as api:
        assert api.list_projects()  # slower but fine
        fake.faults.slow_next(1, 4.0)  # the next answer comes after the client's timeout
        assert api.list_instance_types()
        assert fake.requests_to("/v2/instance-types") == 2
        assert len(sleeps) == 1


def test_a_timed_out_bid_post_is_retried_and_leaves_one_bid(fake: FakeMithril) -> None:
    with MithrilClient(fake.api_key, fake.url, timeout=0.3, sleep=lambda _: None) as api:
        fake.faults.slow_next(1, 1.0)
        bid = api.create_bid(bid_request(fake))
    # the server acted on the timed-out POST too: its Idempotency-Key made it the same bid
    time.sleep(1.2)
    assert [b["fid"] for b in fake.bids()] == [bid.fid]


def test_a_lost_answer_is_retried_and_a_replayed_key_may_get_409(
    client: MithrilClient, fake: FakeMithril
) -> None:
    fake.faults.lose_next(1, status=503)  # the bid is placed, the client sees 503
    bid = client.create_bid(bid_request(fake, name="hf-lost-0"))
    assert [b["fid"] for b in fake.bids()] == [bid.fid]  # by default the replay returns it
    fake.faults.lose_next(1, status=503)
    fake.faults.conflict_next_replay()
    with pytest.raises(ConflictError, match="HTTP 409") as refused:
        client.create_bid(bid_request(fake, name="hf-lost-1"))
    assert refused.value.attempts == 2  # retried: the first attempt may have placed it (it did)
    assert [b["name"] for b in fake.bids()] == ["hf-lost-0", "hf-lost-1"]


def test_no_capacity_leaves_the_bid_open_until_capacity_frees(
    client: MithrilClient, fake: FakeMithril
) -> None:
    fake.set_capacity("a100-80gb.sxm.1x", 1, region=REGION)
    first = placed(client, fake, bid_request(fake, name="hf-cap-0"))
    assert fake.wait_until(lambda: client.get_bid(first.fid).status == "Allocated", timeout=20)
    a100 = fake.instance_type_fid("a100-80gb.sxm.1x")
    auction = next(
        a for a in client.list_availability() if a.instance_type == a100 and a.region == REGION
    )
    assert auction.capacity == 0
    second = placed(client, fake, bid_request(fake, name="hf-cap-1"))
    third = placed(client, fake, bid_request(fake, name="hf-cap-2", region="us-central2-a"))
    # the third (other region, created later) is allocated while the second still waits
    assert fake.wait_until(lambda: client.get_bid(third.fid).status == "Allocated", timeout=20)
    assert client.get_bid(second.fid).status == "Open"
    client.cancel_bid(first.fid)
    assert fake.wait_until(lambda: client.get_bid(second.fid).status == "Allocated", timeout=20)


def test_price_floor_leaves_low_bids_open(client: MithrilClient, fake: FakeMithril) -> None:
    fake.set_price_floor(10.0)
    low = placed(client, fake, bid_request(fake, name="hf-low-0", limit_price=5.0))
    high = placed(client, fake, bid_request(fake, name="hf-high-0", limit_price=12.0))
    assert fake.wait_until(lambda: client.get_bid(high.fid).status == "Allocated", timeout=20)
    assert client.get_bid(low.fid).status == "Open"
    prices = client.current_prices(fake.instance_type_fid("a100-80gb.sxm.1x"), region=REGION)
    assert prices.spot_price_cents == 1000
    fake.set_price_floor(0.0)
    assert fake.wait_until(lambda: client.get_bid(low.fid).status == "Allocated", timeout=20)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _script_pids(fake: FakeMithril, bid_fid: str) -> list[int]:
    def written() -> bool:
        instances = fake.instances_of(bid_fid)
        return bool(instances) and (Path(instances[0].folder) / "pids").exists()

    assert fake.wait_until(written, timeout=20), "the startup script did not start"
    folder = Path(fake.instances_of(bid_fid)[0].folder)
    assert fake.wait_until(lambda: len((folder / "pids").read_text().split()) == 2, timeout=10)
    return [int(pid) for pid in (folder / "pids").read_text().split()]


SCRIPT = "sleep 300 &\necho $$ $! > pids.tmp && mv pids.tmp pids\nwait\n"


def test_preemption_sends_the_bid_back_to_open_and_reallocates_a_new_instance(
    client: MithrilClient, fake: FakeMithril
) -> None:
    bid = placed(
        client,
        fake,
        bid_request(fake, launch_specification=LaunchSpecification(startup_script=SCRIPT)),
    )
    pids = _script_pids(fake, bid.fid)
    assert all(_alive(pid) for pid in pids)
    fake.preempt(bid.fid)
    assert client.get_bid(bid.fid).status == "Preempting"
    (old,) = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
    assert old.status == "STATUS_PREEMPTING"
    # never Terminated by preemption: back to Open, then Allocated again on a new instance
    assert fake.wait_until(lambda: len(client.get_bid(bid.fid).instances) == 2, timeout=20)
    assert client.get_bid(bid.fid).status == "Allocated"
    listed = {i.fid: i for i in client.list_instances(fake.project_fid, bid_fids=[bid.fid])}
    assert listed[old.fid].status == "STATUS_PREEMPTED"  # the old one stays listed
    (new_fid,) = set(listed) - {old.fid}
    assert fake.wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10)
    assert [i.fid for i in fake.billing_instances()] == [new_fid]
    client.cancel_bid(bid.fid)
    assert fake.billing_instances() == []


def test_cancel_kills_the_whole_process_group(client: MithrilClient, fake: FakeMithril) -> None:
    bid = placed(
        client,
        fake,
        bid_request(fake, launch_specification=LaunchSpecification(startup_script=SCRIPT)),
    )
    pids = _script_pids(fake, bid.fid)
    client.cancel_bid(bid.fid)
    assert fake.wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10)
    assert fake.billing_instances() == []


def test_startup_script_runs_in_its_own_folder_without_the_api_key(
    client: MithrilClient, fake: FakeMithril, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MITHRIL_API_KEY", fake.api_key)
    script = 'pwd > where.txt; env > env.txt; echo "$MITHRIL_INSTANCE_FID" > fid.txt\n'
    bid = placed(
        client,
        fake,
        bid_request(fake, launch_specification=LaunchSpecification(startup_script=script)),
    )
    assert fake.wait_until(
        lambda: (
            bool(fake.instances_of(bid.fid))
            and (Path(fake.instances_of(bid.fid)[0].folder) / "fid.txt").exists()
        ),
        timeout=20,
    )
    instance = fake.instances_of(bid.fid)[0]
    folder = Path(instance.folder)
    assert folder.is_relative_to(fake.work_dir)
    assert (folder / "where.txt").read_text().strip() == str(folder)
    assert (folder / "fid.txt").read_text().strip() == instance.fid
    assert fake.api_key not in (folder / "env.txt").read_text()
    client.cancel_bid(bid.fid)


def test_an_instance_bills_after_its_script_exits_until_the_bid_is_cancelled(
    client: MithrilClient, fake: FakeMithril
) -> None:
    bid = client.create_bid(
        bid_request(fake, launch_specification=LaunchSpecification(startup_script="true\n"))
    )
    assert fake.wait_until(lambda: bool(fake.seconds_billed_after_exit()), timeout=20)
    (instance,) = client.list_instances(fake.project_fid, bid_fids=[bid.fid])
    assert instance.status == "STATUS_RUNNING"  # the API shows no exit: it keeps running
    assert client.get_bid(bid.fid).status == "Allocated"
    assert [i.fid for i in fake.billing_instances()] == [instance.fid]
    client.cancel_bid(bid.fid)
    assert fake.billing_instances() == []
    frozen = fake.seconds_billed_after_exit()[instance.fid]
    time.sleep(0.1)
    assert fake.seconds_billed_after_exit()[instance.fid] == frozen
