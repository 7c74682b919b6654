"""Pure pieces of the Mithril provider: region choice, default prices, the startup script."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flow_backend.errors import ValidationError
from flow_backend.models import TaskStatus
from flow_backend.providers.mithril.account import choose_offer
from flow_backend.providers.mithril.api import Auction, Bid, Instance
from flow_backend.providers.mithril.api.prices import parse_dollars
from flow_backend.providers.mithril.bid_request import launch_plan
from flow_backend.providers.mithril.nodes import NodeView
from flow_backend.providers.mithril.pricing import limit_price
from flow_backend.providers.mithril.records import past_boot_limit, record_of
from flow_backend.providers.mithril.startup_script import render_startup_script
from flow_backend.providers.mithril.volume_script import VolumeMount
from flow_backend.remote import record_exit_code
from flow_backend.task_config import TaskConfig, VolumeSpec


def auction(region: str, capacity: int, price: str, it: str = "it_a") -> Auction:
    return Auction.model_validate(  # as the API sends it: a dollar string
        {
            "fid": f"auc_{region}",
            "instance_type": it,
            "region": region,
            "capacity": capacity,
            "last_instance_price": price,
            "adjustable_memory": False,
        }
    )


def test_region_with_capacity_wins_over_a_cheaper_full_one() -> None:
    auctions = [
        auction("cheap-but-full", 1, "$1.00"),
        auction("roomy", 10, "$3.00"),
        auction("roomy-cheaper", 10, "$2.00"),
        auction("other-type", 99, "$0.10", it="it_b"),
    ]

    def region(fids: set[str], count: int) -> str | None:
        offer = choose_offer(auctions, fids, count)
        return offer.region if offer else None

    assert region({"it_a"}, 2) == "roomy-cheaper"
    assert region({"it_a"}, 1) == "cheap-but-full"
    assert region({"it_a"}, 50) == "cheap-but-full"  # none fits: cheapest, waits
    assert region({"it_missing"}, 1) is None
    assert region({"it_a", "it_b"}, 1) == "other-type"  # two ids of one name: the best market


def test_default_limit_price_follows_the_spot_price_capped_by_the_maximum() -> None:
    assert limit_price(6.40, None) == 8.0  # spot × 1.25
    assert limit_price(1.01, None) == 1.27  # rounded up to the cent
    assert limit_price(6.40, 7.0) == 7.0  # max_price_per_hour caps it
    assert limit_price(6.40, 20.0) == 8.0


@pytest.mark.parametrize("text", ["$12.00", "$0.5", "$1,200.00", " $3 "])
def test_dollar_strings_parse(text: str) -> None:
    assert parse_dollars(text) == float(text.strip().lstrip("$").replace(",", ""))


def test_a_price_without_dollar_sign_parses() -> None:  # a newer API may write them so
    assert parse_dollars("12.00") == 12.0


@pytest.mark.parametrize("bad", ["$", "$-1", "twelve", True, -3])
def test_bad_dollar_strings_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="price"):
        parse_dollars(bad)


def test_startup_script_is_valid_bash_and_quotes_everything() -> None:
    script = render_startup_script(
        "hf-1-0",
        "python -c 'print(\"$HOME; rm -rf /\")' && echo done",
        image="pytorch/pytorch:2.1",
        volumes=[
            VolumeMount("vol_a", "my-data", "Block", "/volumes/my data"),
            VolumeMount("vol_b", "shared", "File", "/volumes/shared"),
        ],
        max_run_seconds=60,
    )
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "timeout -k 30 60" in script
    assert "flow_block my-data vol_a d '/volumes/my data'" in script
    assert "flow_share shared vol_b /volumes/shared" in script
    assert "CMD='python -c '\"'\"'print(\"$HOME; rm -rf /\")'\"'\"' && echo done'" in script


def test_startup_script_over_the_api_limit_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        render_startup_script(
            "t", "x" * 9_000, image=None, volumes=[VolumeMount("vol_a", "v", "Block", "/v")] * 20
        )
    assert caught.value.field == "command"


def test_a_volume_without_mount_path_is_made_and_named_at_volumes_slash_name() -> None:
    # what an instance does with the default mount path, checked without touching this host's /
    config = TaskConfig(
        name="hf-vol-0",
        unique_name=False,
        command="ls $FLOW_VOLUME_TRAINING_DATA",
        volumes=[VolumeSpec(name="training-data")],
        upload_code=False,
    )
    script = render_startup_script(
        config.name,
        config.command_string,
        image=None,
        volumes=[VolumeMount("vol_a", "training-data", "Block", "/volumes/training-data")],
    )
    assert "flow_block training-data vol_a d /volumes/training-data" in script
    plan = launch_plan(config, Bid.model_construct(fid="bid_1", name=config.name), "a100")
    assert plan.env["FLOW_VOLUME_TRAINING_DATA"] == "/volumes/training-data"


def test_a_volume_whose_device_never_appears_ends_the_node_with_125_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flow_backend.providers.mithril import volume_script

    monkeypatch.setattr(volume_script, "DEVICE_WAIT_SECONDS", 1)
    section = volume_script.volume_section(
        [VolumeMount("vol_nowhere0000", "data", "Block", str(tmp_path / "data"))],
        record_exit_code('"$D"', "125"),
    )
    run = subprocess.run(
        ["bash", "-c", f'D={tmp_path}\n{section}echo "the command ran"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 125 and "the command ran" not in run.stdout
    assert (tmp_path / "exit_code").read_text().strip() == "125"
    assert (tmp_path / "ready").exists()  # the provider finds the node and reads why
    assert (tmp_path / "output.log").read_text() == (
        "flow: volume data: no device appeared for Block volume vol_nowhere0000 within 1 s; "
        "the command did not run\n"
    )


def _allocated(instance_status: str) -> tuple[Bid, list[Instance]]:
    """An Allocated bid whose one instance, allocated an hour ago, reports ``instance_status``."""
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    common = {"project": "proj_1", "created_by": "user_1", "instance_type": "it_a"}
    bid = Bid.model_validate(
        {
            **common,
            "fid": "bid_1",
            "name": "hf-0",
            "created_at": an_hour_ago,
            "limit_price": "$2.00",
            "instance_quantity": 1,
            "instances": ["inst_1"],
            "launch_specification": {},
            "status": "Allocated",
        }
    )
    instance = Instance.model_validate(
        {
            **common,
            "fid": "inst_1",
            "name": "hf-0-0",
            "created_at": an_hour_ago,
            "bid": "bid_1",
            "ssh_destination": "127.0.0.1:22",
            "status": instance_status,
        }
    )
    return bid, [instance]


@pytest.mark.parametrize(
    ("instance_status", "expected", "said"),
    [
        ("STATUS_STARTING", TaskStatus.FAILED, "did not start the command within 1200 s"),
        ("STATUS_INITIALIZING", TaskStatus.FAILED, "did not start the command within 1200 s"),
        ("STATUS_RUNNING", TaskStatus.RUNNING, None),
        ("STATUS_RELOCATING", TaskStatus.PREEMPTING, "relocating instance inst_1"),
        ("STATUS_PREEMPTING", TaskStatus.PREEMPTING, "STATUS_PREEMPTING"),
        ("STATUS_STOPPING", TaskStatus.FAILED, "instance inst_1 STATUS_STOPPING"),
        ("STATUS_TERMINATED", TaskStatus.FAILED, "instance inst_1 STATUS_TERMINATED"),
        ("STATUS_ERROR", TaskStatus.FAILED, "instance inst_1 STATUS_ERROR"),
        ("STATUS_PREEMPTED", TaskStatus.FAILED, "preempted"),
        ("STATUS_REPLACED", TaskStatus.FAILED, "preempted"),
        ("STATUS_PAUSED", TaskStatus.PROVISIONING, "instance inst_1 status 'STATUS_PAUSED'"),
        ("STATUS_FROM_THE_FUTURE", TaskStatus.PROVISIONING, "'STATUS_FROM_THE_FUTURE'"),
    ],
)
def test_the_instance_status_decides_an_allocated_bids_task(
    instance_status: str, expected: TaskStatus, said: str | None
) -> None:
    """As another process sees it (no SSH), an hour after allocation, boot limit 1200 s: only a
    booting instance is past the boot limit; paused or unknown ones keep being polled."""
    bid, instances = _allocated(instance_status)
    record = record_of(bid, instances, "a100", None)
    past_boot_limit(record, instances, 1200.0)
    assert record.status is expected
    assert (record.message or "") == "" if said is None else said in (record.message or "")


def test_a_task_seen_running_is_never_past_the_boot_limit() -> None:
    """Its node cannot be read this poll (a network blip): still running, not ended."""
    bid, instances = _allocated("STATUS_RUNNING")
    unread = [NodeView(rank=0, instance_fid="inst_1", destination="ubuntu@127.0.0.1:22")]
    for ran, expected in ((True, TaskStatus.RUNNING), (False, TaskStatus.FAILED)):
        record = record_of(bid, instances, "a100", unread, feeding=True, ran=ran)
        past_boot_limit(record, instances, 1200.0, ran=ran)
        assert record.status is expected
