"""The Mithril provider against what the real cloud does (the fake's default behaviour)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from mithril_helpers import require_real_volumes, settings_for
from sshd import SSHServer

from flow_backend import Flow, TaskConfig
from flow_backend.errors import ProviderError, ResourceNotFoundError, ValidationError
from flow_backend.models import TaskStatus
from flow_backend.providers.mithril import MithrilProvider
from flow_backend.remote import connect, parse_destination
from flow_backend.testing import FakeMithril


def test_no_instance_type_on_mithril_is_an_error_listing_the_choices(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    with pytest.raises(ValidationError) as caught:
        cloud_flow.run(TaskConfig(command="true", upload_code=False))
    assert caught.value.field == "instance_type"
    assert "a100-80gb.sxm.1x" in str(caught.value) and "h200.8x" in str(caught.value)
    with pytest.raises(ResourceNotFoundError, match="Mithril offers no instance type 'cpu'"):
        cloud_flow.run(TaskConfig(command="true", instance_type="cpu", upload_code=False))
    assert cloud.bids() == []  # nothing was asked of the API that creates anything


def test_min_gpu_memory_picks_a_type_mithril_has_and_h200_runs(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    task = cloud_flow.run(TaskConfig(command="echo big", min_gpu_memory_gb=100, upload_code=False))
    # H200 (141 GB) is the cheapest type with 100 GB per GPU there
    assert cloud.bid(task.task_id)["instance_type"] == cloud.instance_type_fid("h200.8x")
    assert task.record.instance_type == "h200.8x"
    assert task.wait(timeout=60) is TaskStatus.COMPLETED, task.logs()
    assert task.logs() == "big\n"
    b200 = cloud_flow.run(TaskConfig(command="true", instance_type="b200", upload_code=False))
    assert cloud.bid(b200.task_id)["instance_type"] == cloud.instance_type_fid("b200-192gb.8x")
    cloud_flow.cancel(b200.task_id)


def test_names_are_made_lowercase_or_refused_before_any_request(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    task = cloud_flow.run(
        TaskConfig(name="My_Run", command="true", instance_type="a100", upload_code=False)
    )
    assert task.name.startswith("my_run-") and cloud.bid(task.task_id)["name"] == task.name
    cloud_flow.cancel(task.task_id)
    cloud.reset_request_counts()
    with pytest.raises(ValidationError) as caught:
        cloud_flow.run(TaskConfig(name="x" * 100, command="true", instance_type="a100"))
    assert caught.value.field == "name" and "at most 100" in str(caught.value)
    assert cloud.requests_to("/v2/spot/bids", "POST") == 0


def test_every_bid_carries_our_key_and_the_projects_required_keys(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    task = cloud_flow.run(TaskConfig(command="true", instance_type="a100", upload_code=False))
    keys = cloud.bid(task.task_id)["launch_specification"]["ssh_keys"]
    assert cloud.required_ssh_key_fid in keys and len(keys) == 2
    cloud_flow.cancel(task.task_id)


def test_the_default_limit_price_follows_the_live_spot_price_capped_by_the_maximum(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    cloud.set_spot_price("a100-80gb.sxm.1x", 2.0)
    default = cloud_flow.run(TaskConfig(command="true", instance_type="a100", upload_code=False))
    assert cloud.bid(default.task_id)["limit_price"] == "$2.50"  # spot × 1.25
    capped = cloud_flow.run(
        TaskConfig(command="true", instance_type="a100", max_price_per_hour=2.2, upload_code=False)
    )
    assert cloud.bid(capped.task_id)["limit_price"] == "$2.20"
    for task in (default, capped):
        cloud_flow.cancel(task.task_id)


def test_a_limit_below_mithrils_minimum_is_one_clear_error(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    cloud.set_spot_price("a100-80gb.sxm.1x", 10.0)  # the minimum is now $5.00
    with pytest.raises(ValidationError) as caught:
        cloud_flow.run(
            TaskConfig(
                command="true", instance_type="a100", max_price_per_hour=2.0, upload_code=False
            )
        )
    message = str(caught.value)
    assert caught.value.field == "max_price_per_hour"
    assert "$2.00" in message and "below the minimum" in message and "Raise" in message
    assert cloud.bids() == []


def test_a_block_volume_shared_by_two_live_tasks_is_refused_clearly(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    from flow_backend.task_config import VolumeSpec

    spec = VolumeSpec(name="scratch", size_gb=5, mount_path=str(tmp_path / "mnt"))

    def using_it(command: str) -> TaskConfig:
        return TaskConfig(
            command=command,
            instance_type="a100",
            volumes=[spec],
            region="us-central1-a",
            upload_code=False,
        )

    first = cloud_flow.run(using_it("sleep 300"))
    with pytest.raises(ValidationError, match=r"one instance at a time.*File volume"):
        cloud_flow.run(using_it("true"))
    cloud_flow.cancel(first.task_id)


def test_an_instance_that_never_answers_is_cancelled_after_the_boot_limit(
    cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    cloud.settings.ssh_ready_delay = 1000.0  # sshd never comes up
    cloud.settings.clock_offset = 3600.0  # the API's clock is an hour ahead: it still counts
    settings = settings_for(cloud, sshd, tmp_path / "home").model_copy(
        update={"mithril_boot_timeout": 2.0}
    )
    with Flow(MithrilProvider(settings)) as flow:
        task = flow.run(TaskConfig(command="true", instance_type="a100", upload_code=False))
        assert task.wait(timeout=60) is TaskStatus.FAILED
    assert "did not start the command within 2 s" in (task.message or "")
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    assert cloud.billing_instances() == []


def test_the_instance_status_decides_while_the_bid_stays_allocated(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    """Relocating is no boot delay, however long ago the instance booted; an instance in error
    ends the task failed, naming the status, with its log brought home first."""
    config = TaskConfig(command="echo started; sleep 300", instance_type="a100", upload_code=False)
    task = cloud_flow.run(config)
    assert cloud.wait_until(lambda: "started" in task.logs(), 60)
    provider = cloud_flow.provider  # from now on every task is long past the boot limit
    provider.settings = provider.settings.model_copy(update={"mithril_boot_timeout": 0.01})
    (instance,) = cloud.instances_of(task.task_id)
    cloud.set_instance_status(instance.fid, "STATUS_RELOCATING")  # the bid stays Allocated
    moving = cloud_flow.get_task(task.task_id)
    assert moving.status is TaskStatus.PREEMPTING, moving.message
    assert "STATUS_RELOCATING" in (moving.message or "")
    cloud.set_instance_status(instance.fid, None)  # relocated: running again
    assert cloud_flow.get_task(task.task_id).status is TaskStatus.RUNNING
    cloud.set_instance_status(instance.fid, "STATUS_ERROR")
    other = MithrilProvider(provider.settings)  # `flow status` in another shell sees it first
    try:
        (seen,) = other.list_tasks()
    finally:
        other.close()
    assert seen.status is TaskStatus.FAILED
    assert f"instance {instance.fid} STATUS_ERROR" in (seen.message or "")
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    failed = cloud_flow.get_task(task.task_id)
    assert (failed.status, failed.message) == (seen.status, seen.message)
    assert failed.logs() == "started\n"  # brought home before the bid was cancelled


@pytest.fixture
def evolved(tmp_path: Path, sshd: SSHServer) -> Iterator[FakeMithril]:
    """A fake answering like a newer API (not spec-checked: that is the point)."""
    with FakeMithril(
        tmp_path / "fake-evolved",
        ssh_destination=sshd.destination,
        provisioning_delay=0.1,
        boot_delay=0.1,
        ssh_ready_delay=0.1,
    ) as fake:
        fake.evolve_api()
        yield fake
        assert fake.billing_instances() == []


def test_values_newer_than_the_spec_never_break_a_poll(
    evolved: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    settings = settings_for(evolved, sshd, tmp_path / "home")
    with Flow(MithrilProvider(settings)) as flow:
        task = flow.run(TaskConfig(command="sleep 300", instance_type="a100", upload_code=False))
        assert task.record.cost_per_hour == 2.0  # "2.00" without "$" read as dollars
        assert evolved.wait_until(lambda: flow.get_task(task.task_id).status.value == "running")
        evolved.set_bid_status(task.task_id, "Relocating")
        assert flow.get_task(task.task_id).status is TaskStatus.PREEMPTING
        evolved.set_bid_status(task.task_id, "SomethingNew")
        record = flow.get_task(task.task_id).record
        assert "SomethingNew" in (record.message or "") and not record.status.is_terminal
        evolved.set_bid_status(task.task_id, "Replaced")  # taken away: ends, bid cancelled
        ended = flow.get_task(task.task_id)
        assert ended.status is TaskStatus.FAILED and (ended.message or "").startswith("preempted")
        evolved.set_bid_status(task.task_id, None)
        assert evolved.bid(task.task_id)["status"] == "Terminated"
        assert [t.task_id for t in flow.list_tasks()] == [task.task_id]


def test_host_keys_are_bound_to_the_instance_id_not_the_address(
    sshd: SSHServer, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    destination = parse_destination(sshd.destination)
    connect(destination, sshd.key_path, known_hosts=known_hosts, host_key_alias="mithril:inst_a")
    assert "mithril:inst_a" in known_hosts.read_text()
    # inst_a's recorded key is replaced by another one: the same instance id with another key
    # at that address is refused ...
    other = paramiko.RSAKey.generate(1024)
    known_hosts.write_text(f"mithril:inst_a {other.get_name()} {other.get_base64()}\n")
    with pytest.raises(ProviderError, match=r"host key of mithril:inst_a .* changed"):
        connect(
            destination, sshd.key_path, known_hosts=known_hosts, host_key_alias="mithril:inst_a"
        )
    # ... while a new instance on the reused address is trusted (its key is its own)
    conn = connect(
        destination, sshd.key_path, known_hosts=known_hosts, host_key_alias="mithril:inst_b"
    )
    conn.close()
    assert "mithril:inst_b" in known_hosts.read_text()


def _engine_works() -> bool:
    import subprocess

    for engine in ("docker", "podman"):
        try:
            if subprocess.run([engine, "info"], capture_output=True, timeout=20).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            continue
    return False


def test_an_image_without_a_container_engine_is_a_clear_failure_not_a_run_on_the_host(
    cloud_flow: Flow,
) -> None:
    if _engine_works():
        pytest.skip("this machine has a working container engine: the image would really run")
    task = cloud_flow.run(
        TaskConfig(
            command="echo ran-on-the-host",
            image="python:3.11-slim",
            instance_type="a100",
            upload_code=False,
        )
    )
    assert task.wait(timeout=60) is TaskStatus.FAILED
    assert task.exit_code == 126 and "docker/podman" in (task.message or "")
    log = task.logs()
    assert "needs docker or podman" in log and "ran-on-the-host" not in log


def test_a_volume_shared_by_several_instances_must_be_a_file_volume(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    from flow_backend.task_config import VolumeSpec

    def two_nodes(spec: VolumeSpec) -> TaskConfig:
        return TaskConfig(
            command="true", instance_type="a100", num_instances=2, volumes=[spec], upload_code=False
        )

    block = VolumeSpec(name="scratch", mount_path=str(tmp_path / "scratch"))
    with pytest.raises(ValidationError) as caught:
        cloud_flow.run(two_nodes(block))
    assert caught.value.field == "volumes" and "File volume" in str(caught.value)
    with pytest.raises(ValidationError, match="not a valid Mithril volume name"):
        cloud_flow.run(two_nodes(VolumeSpec(name="1data", interface="file")))
    assert cloud.requests_to("/v2/volumes", "POST") == 0 and cloud.bids() == []
    require_real_volumes()
    mount = tmp_path / "shared"
    shared = VolumeSpec(name="shared", interface="file", mount_path=str(mount))
    # each rank writes into the share, mounted on its own instance: both land in the one share
    writes = TaskConfig(
        command=f"findmnt -n {mount} >/dev/null && echo mounted && touch {mount}/rank-$FLOW_NODE_RANK",
        instance_type="a100",
        num_instances=2,
        volumes=[shared],
        upload_code=False,
    )
    task = cloud_flow.run(writes)
    assert {v.name: v.interface for v in cloud.state.volumes.values()} == {"shared": "File"}
    assert task.wait(timeout=60) is TaskStatus.COMPLETED, task.logs()
    assert task.logs() == "mounted\n"
    assert sorted(p.name for p in cloud.volume_backing("shared").iterdir()) == ["rank-0", "rank-1"]
    assert not mount.exists() or not any(mount.iterdir())  # a mount on each instance, not here
    assert cloud.bid(task.task_id)["launch_specification"]["volumes"] != []


def test_following_the_log_of_a_preempted_task_ends_and_nothing_bills(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    import threading

    task = cloud_flow.run(
        TaskConfig(command="echo started; sleep 300", instance_type="a100", upload_code=False)
    )
    lines: list[str] = []
    errors: list[BaseException] = []

    def follow() -> None:  # what `flow run --wait` does
        try:
            lines.extend(cloud_flow.provider.follow_logs(task.task_id))
        except BaseException as error:
            errors.append(error)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert cloud.wait_until(lambda: lines == ["started\n"], timeout=60)
    cloud.preempt(task.task_id)
    follower.join(timeout=60)
    assert not follower.is_alive(), "following the log of a preempted task hung"
    assert errors == []  # the dropped connection is no error: the stream ends with the task
    assert lines == ["started\n"]  # no line twice
    # the follower's own polls saw the end and cancelled the bid
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    assert cloud_flow.get_task(task.task_id).status is TaskStatus.FAILED
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    assert cloud.billing_instances() == []


def test_flow_status_in_another_process_cancels_a_preempted_bid(
    cloud_flow: Flow, cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    task = cloud_flow.run(TaskConfig(command="sleep 300", instance_type="a100", upload_code=False))
    assert cloud.wait_until(lambda: cloud_flow.get_task(task.task_id).status.value == "running")
    cloud.preempt(task.task_id)  # ... and the launcher that fed it is gone
    assert cloud.wait_until(lambda: cloud.bid(task.task_id)["status"] != "Preempting", 20)
    other = MithrilProvider(settings_for(cloud, sshd, tmp_path / "other-home"))
    try:
        (record,) = other.list_tasks()
    finally:
        other.close()
    assert record.status is TaskStatus.FAILED and (record.message or "").startswith("preempted")
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    assert cloud.billing_instances() == []
