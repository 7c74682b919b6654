"""The Mithril provider's promises: ranks, O(1) polling, preemption, prices, volumes, bad input."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from mithril_helpers import require_real_volumes, settings_for
from sshd import SSHServer

from flow_backend import Flow, Task, TaskConfig
from flow_backend.errors import (
    AuthenticationError,
    ConflictError,
    ResourceNotFoundError,
    TaskNotFoundError,
    ValidationError,
)
from flow_backend.models import TaskStatus
from flow_backend.providers.mithril import MithrilProvider, bid_create, visibility
from flow_backend.providers.mithril import nodes as nodes_module
from flow_backend.task_config import VolumeSpec
from flow_backend.testing import FakeMithril


def test_every_node_gets_its_rank_and_the_main_ip(cloud_flow: Flow, tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    out.mkdir()
    command = f'echo "$FLOW_NODE_RANK/$FLOW_NUM_NODES@$FLOW_MAIN_IP" > {out}/rank-$FLOW_NODE_RANK'
    task = cloud_flow.run(
        TaskConfig(command=command, instance_type="a100", num_instances=2, upload_code=False)
    )
    task.wait(timeout=60)
    assert task.status == TaskStatus.COMPLETED
    assert sorted(p.read_text() for p in out.iterdir()) == ["0/2@127.0.0.1\n", "1/2@127.0.0.1\n"]


def test_a_multi_node_task_ends_when_every_rank_has_ended_not_when_rank_0_does(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    marker = tmp_path / "rank-1-finished"
    # rank 0 is done at once; rank 1 works on: ending the bid with rank 0 would kill it
    command = f'[ "$FLOW_NODE_RANK" = 0 ] || {{ sleep 1.5; touch {marker}; }}'
    task = cloud_flow.run(
        TaskConfig(command=command, instance_type="a100", num_instances=2, upload_code=False)
    )
    assert task.wait(timeout=60) is TaskStatus.COMPLETED, task.message
    assert marker.exists() and task.exit_code == 0
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    # a failing rank still ends the task at once, whatever rank 0 does
    failing = cloud_flow.run(
        TaskConfig(
            command='[ "$FLOW_NODE_RANK" = 1 ] && exit 3; sleep 120',
            instance_type="a100",
            num_instances=2,
            upload_code=False,
        )
    )
    assert failing.wait(timeout=60) is TaskStatus.FAILED
    assert failing.exit_code == 3 and "rank 1 failed with exit code 3" in (failing.message or "")


def test_polling_costs_the_same_few_requests_for_3_or_8_tasks(
    cloud_flow: Flow, cloud: FakeMithril, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh_status_reads: list[int] = []
    real_read = nodes_module.read_statuses

    def counting_read(conn: Any, task_dirs: Any) -> Any:
        ssh_status_reads.append(len(task_dirs))
        return real_read(conn, task_dirs)

    monkeypatch.setattr(nodes_module, "read_statuses", counting_read)
    cloud.settings.own_addresses = False  # kindly: every instance on one host, as on an ssh pool

    def costs_per_poll(count: int) -> tuple[int, list[int]]:
        tasks = [
            cloud_flow.run(TaskConfig(command="sleep 300", instance_type="a100", upload_code=False))
            for _ in range(count)
        ]
        ids = [t.task_id for t in tasks]
        assert cloud.wait_until(
            lambda: all(
                r.status == TaskStatus.RUNNING for r in cloud_flow.provider.get_many(ids).values()
            ),
            timeout=90,
        )
        cloud.reset_request_counts()
        ssh_status_reads.clear()
        cloud_flow.provider.get_many(ids)
        api_requests = sum(cloud.request_counts.values())
        reads = list(ssh_status_reads)
        for task_id in ids:
            cloud_flow.cancel(task_id)
        return api_requests, reads

    # one bid list and one instance list; one SSH status round trip for all tasks on the host
    assert costs_per_poll(3) == (2, [3])
    assert costs_per_poll(8) == (2, [8])


def test_preemption_ends_the_task_failed_with_a_preempted_message(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    task = cloud_flow.run(TaskConfig(command="sleep 300", instance_type="a100", upload_code=False))
    assert cloud.wait_until(
        lambda: cloud_flow.get_task(task.task_id).status == TaskStatus.RUNNING, 60
    )
    cloud.preempt(task.task_id)
    assert cloud_flow.get_task(task.task_id).status == TaskStatus.PREEMPTING
    task.wait(timeout=60)
    assert task.status == TaskStatus.FAILED
    assert (task.record.message or "").startswith("preempted")
    # the bid went back to Open to be allocated again: the provider cancelled it instead, so
    # the command does not start a second time on a new instance and nothing bills
    assert cloud.bid(task.task_id)["status"] == "Terminated"
    assert cloud.billing_instances() == []


def test_a_limit_below_the_price_floor_stays_pending(cloud_flow: Flow, cloud: FakeMithril) -> None:
    cloud.set_price_floor(5.0)
    task = cloud_flow.run(
        TaskConfig(command="true", instance_type="a100", max_price_per_hour=2.0, upload_code=False)
    )
    assert cloud.bid(task.task_id)["limit_price"] == "$2.00"
    cloud.wait_until(lambda: False, timeout=0.5)  # several allocation rounds pass
    record = cloud_flow.get_task(task.task_id)
    assert record.status == TaskStatus.PENDING
    assert "$2.00" in (record.record.message or "")
    assert cloud_flow.cancel(task.task_id).status == TaskStatus.CANCELLED


def test_default_limit_price_and_cost_per_hour(cloud_flow: Flow, cloud: FakeMithril) -> None:
    task = cloud_flow.run(TaskConfig(command="true", instance_type="4xa100", upload_code=False))
    assert cloud.bid(task.task_id)["limit_price"] == "$8.00"  # $2.00 per A100 80GB GPU-hour
    assert task.record.cost_per_hour == 8.0
    cloud_flow.cancel(task.task_id)


def test_a_block_volume_is_formatted_once_mounted_and_keeps_its_data(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    require_real_volumes()
    # each fake instance mounts in a namespace of its own: this machine's folder stays empty
    mount = tmp_path / "mnt" / "shared-data"
    spec = VolumeSpec(name="shared-data", size_gb=20, mount_path=str(mount))

    def run(command: str) -> Task:
        return cloud_flow.run(
            TaskConfig(
                command=command,
                instance_type="a100",
                volumes=[spec],
                region="us-central1-a",
                upload_code=False,
            )
        )

    first = run(
        f'test "$FLOW_VOLUME_SHARED_DATA" = {mount} && findmnt -no FSTYPE {mount} '
        f"&& echo kept > {mount}/data.txt"
    )
    # a Block volume attaches to one instance at a time: the next task uses it after the first
    assert first.wait(timeout=60) is TaskStatus.COMPLETED, first.logs()
    assert first.logs() == "ext4\n"  # a real block device, formatted, mounted at the path
    image = cloud.volume_backing("shared-data")
    assert "ext4" in subprocess.run(["blkid", str(image)], capture_output=True, text=True).stdout
    assert not mount.exists() or not any(mount.iterdir())  # the data is on the device only
    second = run(f"cat {mount}/data.txt && ls {mount}")  # a new instance: not formatted again
    assert second.wait(timeout=60) is TaskStatus.COMPLETED, second.logs()
    assert second.logs() == "kept\ndata.txt\nlost+found\n"
    volumes = cloud_flow.provider.list_volumes()
    assert [(v.name, v.size_gb) for v in volumes] == [("shared-data", 20.0)]
    fids = {tuple(cloud.bid(t.task_id)["launch_specification"]["volumes"]) for t in (first, second)}
    assert len(fids) == 1 and len(next(iter(fids))) == 1


def test_a_command_too_long_for_the_startup_script_is_refused(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    with pytest.raises(ValidationError) as caught:
        cloud_flow.run(TaskConfig(command="echo " + "x" * 10_000, upload_code=False))
    assert caught.value.field == "command" and "10000" in str(caught.value)
    assert cloud.bids() == []


def test_secrets_stay_out_of_the_bid_and_local_files(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    task = cloud_flow.run(
        TaskConfig(
            command='test -n "$WANDB_API_KEY" && echo has-key',
            env={"WANDB_API_KEY": "s3cr3t-value"},
            instance_type="a100",
            upload_code=False,
        )
    )
    assert "s3cr3t-value" not in str(cloud.bid(task.task_id))
    task.wait(timeout=60)
    assert task.logs() == "has-key\n"
    for path in (tmp_path / "flow-home").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "s3cr3t-value" not in text and cloud.api_key not in text, path


def test_another_process_sees_the_outcome_and_can_list_and_cancel(
    cloud_flow: Flow, cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    done = cloud_flow.run(
        TaskConfig(
            name="hf-swp1-0",
            unique_name=False,
            command="echo ok",
            instance_type="a100",
            upload_code=False,
        )
    )
    done.wait(timeout=60)
    live = cloud_flow.run(
        TaskConfig(
            name="hf-swp1-1",
            unique_name=False,
            command="sleep 300",
            instance_type="a100",
            upload_code=False,
        )
    )
    with Flow(MithrilProvider(settings_for(cloud, sshd, tmp_path / "flow-home"))) as other:
        seen = other.get_task(done.task_id)
        assert seen.status == TaskStatus.COMPLETED and seen.logs() == "ok\n"
        sweep = other.list_tasks(name_prefix="hf-swp1-")
        assert sorted(t.name for t in sweep) == ["hf-swp1-0", "hf-swp1-1"]
        active = other.list_tasks(active_only=True, name_prefix="hf-swp1-")
        assert [t.task_id for t in active] == [live.task_id]
        assert other.cancel(live.task_id).status == TaskStatus.CANCELLED
    assert cloud.billing_instances() == []


def test_unknown_task_id(cloud_flow: Flow) -> None:
    with pytest.raises(TaskNotFoundError, match="bid_nothere"):
        cloud_flow.get_task("bid_nothere")
    with pytest.raises(TaskNotFoundError):
        cloud_flow.cancel("bid_nothere")


def test_a_new_bid_the_api_does_not_show_yet_is_pending_not_lost(
    cloud_flow: Flow, cloud: FakeMithril, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.settings.bid_visibility_delay = 60.0  # the API's reads lag the new bids
    tasks = [
        cloud_flow.run(
            TaskConfig(
                name=f"hf-unseen-{n}",
                unique_name=False,
                command="sleep 300",
                instance_type="a100",
                upload_code=False,
            )
        )
        for n in range(2)
    ]
    ids = [task.task_id for task in tasks]
    one = cloud_flow.get_task(ids[0])  # one id: GET answers 404
    assert one.status == TaskStatus.PENDING and "does not show" in (one.record.message or "")
    many = cloud_flow.provider.get_many(ids)  # several: the bid list leaves them out
    assert [many[i].status for i in ids] == [TaskStatus.PENDING] * 2
    listed = cloud_flow.list_tasks(active_only=True, name_prefix="hf-unseen-")
    assert [t.task_id for t in listed] == ids[::-1]  # newest first
    with pytest.raises(TaskNotFoundError, match="bid_nothere"):  # never placed: not found at once
        cloud_flow.provider.get_many([ids[0], "bid_nothere"])
    monkeypatch.setattr(visibility, "VISIBILITY_GRACE", 0.0)
    with pytest.raises(TaskNotFoundError, match="still does not show"):
        cloud_flow.get_task(ids[0])
    monkeypatch.undo()
    threading.Timer(0.3, setattr, (cloud.settings, "bid_visibility_delay", 0.0)).start()
    for task_id in ids:  # cancel waits until the API shows the bid (DELETE answers 404 before)
        assert cloud_flow.cancel(task_id).status == TaskStatus.CANCELLED
    assert [cloud.bid(i)["status"] for i in ids] == ["Terminated"] * 2


def test_a_refused_retry_of_a_bid_post_adopts_the_bid_the_first_attempt_placed(
    cloud_flow: Flow, cloud: FakeMithril, monkeypatch: pytest.MonkeyPatch
) -> None:
    def config(name: str) -> TaskConfig:
        return TaskConfig(name=name, command="sleep 300", instance_type="a100", upload_code=False)

    cloud.faults.only_paths = frozenset({"/v2/spot/bids"})
    # The first POST places the bid but its answer is lost (503); the retry carries the same
    # Idempotency-Key and gets 409, which says nothing about what the first attempt placed.
    cloud.faults.lose_next(1, 503)
    cloud.faults.conflict_next_replay()
    task = cloud_flow.run(config("hf-retried"))
    assert cloud.requests_to("/v2/spot/bids", "POST") == 2
    assert [bid["fid"] for bid in cloud.bids()] == [task.task_id]  # one bid, and it is ours
    assert cloud_flow.cancel(task.task_id).status == TaskStatus.CANCELLED
    assert cloud.bid(task.task_id)["status"] == "Terminated"  # nothing left billing (fixture)
    # No attempt placed a bid: the retry's 409 is raised, as before.
    monkeypatch.setattr(bid_create, "ADOPT_WAIT", 0.3)
    cloud.faults.fail_next(1, 503)
    cloud.faults.fail_next(1, 409, detail="Idempotency-Key in use")
    with pytest.raises(ConflictError, match="HTTP 409"):
        cloud_flow.run(config("hf-refused"))
    assert [bid["fid"] for bid in cloud.bids()] == [task.task_id]


def test_bad_settings_give_clear_errors(
    cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    base = settings_for(cloud, sshd, tmp_path / "home")
    config = TaskConfig(command="true", instance_type="a100", upload_code=False)
    wrong_key = base.model_copy(update={"mithril_api_key": "fkey_wrong"})
    with pytest.raises(AuthenticationError, match="MITHRIL_API_KEY"):
        MithrilProvider(wrong_key).submit(config)
    wrong_project = base.model_copy(update={"mithril_project": "nope"})
    with pytest.raises(ResourceNotFoundError, match="default"):
        MithrilProvider(wrong_project).submit(config)
    missing_key = base.model_copy(update={"ssh_key_path": tmp_path / "no-such-key"})
    with pytest.raises(ValidationError, match="ssh_key_path"):
        MithrilProvider(missing_key).submit(config)
    unreachable = base.model_copy(update={"mithril_api_url": "http://127.0.0.1:9"})
    with pytest.raises(Exception, match="MITHRIL_API_URL"):
        MithrilProvider(unreachable).submit(config)
    assert cloud.bids() == []


def test_status_list_and_cancel_work_without_an_ssh_key(
    cloud_flow: Flow,
    cloud: FakeMithril,
    sshd: SSHServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = cloud_flow.run(TaskConfig(command="sleep 300", instance_type="a100", upload_code=False))
    assert cloud.wait_until(
        lambda: cloud_flow.get_task(task.task_id).status == TaskStatus.RUNNING, 60
    )
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))  # no ~/.ssh/id_* either
    keyless = settings_for(cloud, sshd, tmp_path / "other-home").model_copy(
        update={"ssh_key_path": None}
    )
    with Flow(MithrilProvider(keyless)) as other:
        seen = other.get_task(task.task_id)
        assert seen.status == TaskStatus.RUNNING  # as the API shows it; SSH would tell more
        assert "ssh_key_path" in (seen.message or "")
        assert [t.task_id for t in other.list_tasks(active_only=True)] == [task.task_id]
        assert other.cancel(task.task_id).status == TaskStatus.CANCELLED
    assert cloud.billing_instances() == []


def test_max_run_time_stops_the_command(cloud_flow: Flow, cloud: FakeMithril) -> None:
    task = cloud_flow.run(
        TaskConfig(
            command="echo started; sleep 60; echo never",
            instance_type="a100",
            max_run_time_hours=1.5 / 3600,  # 2 seconds once rounded
            upload_code=False,
        )
    )
    task.wait(timeout=60)
    assert task.status == TaskStatus.FAILED
    assert task.record.exit_code == 124
    assert "max_run_time_hours" in (task.record.message or "")
    assert task.logs() == "started\n"


def test_a_task_completes_through_a_flaky_rate_limited_api(
    cloud_flow: Flow, cloud: FakeMithril
) -> None:
    task = cloud_flow.run(TaskConfig(command="echo fine", instance_type="a100", upload_code=False))
    # from here on (a POST is not retried on a 5xx: it could place a second bid)
    cloud.faults.reseed(3)
    cloud.faults.error_rate = 0.1  # 503s, retried for GETs and DELETEs (5 tries: ~1e-5 to fail)
    cloud.faults.rate_limit_next(2, retry_after=0.2)
    task.wait(timeout=90)
    assert cloud.requests_to("/v2/spot/bids/{bid_fid}") + cloud.requests_to("/v2/instances") > 2
    cloud.faults.clear()
    assert task.status == TaskStatus.COMPLETED
    assert task.logs() == "fine\n"
    assert cloud.bid(task.task_id)["status"] == "Terminated"


def test_a_failing_rank_fails_the_task_and_stops_the_others(cloud_flow: Flow) -> None:
    command = 'if [ "$FLOW_NODE_RANK" = 1 ]; then exit 7; fi; sleep 300'
    task = cloud_flow.run(
        TaskConfig(command=command, instance_type="a100", num_instances=2, upload_code=False)
    )
    task.wait(timeout=60)
    assert task.status == TaskStatus.FAILED
    assert task.record.exit_code == 7
    assert "rank 1" in (task.record.message or "")
