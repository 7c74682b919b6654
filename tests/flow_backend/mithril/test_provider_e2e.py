"""A task end to end on the fake Mithril, with a real loopback sshd for the SSH side."""

from __future__ import annotations

from pathlib import Path

from flow_backend import Flow, TaskConfig
from flow_backend.models import TaskStatus
from flow_backend.testing import FakeMithril


def test_a_task_runs_completes_and_stops_billing(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "job.py").write_text(
        "import os\nprint('rank', os.environ['FLOW_NODE_RANK'], os.environ['GREETING'])\n"
    )
    task = cloud_flow.run(
        TaskConfig(
            name="hf-e2e-0",
            unique_name=False,
            command="python3 job.py && echo done",
            instance_type="a100",
            env={"GREETING": "hello"},
            code_root=str(code),
        )
    )
    assert task.task_id.startswith("bid_")
    assert task.status == TaskStatus.PENDING
    task.wait(timeout=60)
    assert task.status == TaskStatus.COMPLETED, task.logs()
    assert task.exit_code == 0
    assert task.logs() == "rank 0 hello\ndone\n"
    bid = cloud.bid(task.task_id)
    assert bid["status"] == "Terminated"  # cancelled once the result was home
    assert cloud.billing_instances() == []
    seconds = cloud.seconds_billed_after_exit()
    assert len(seconds) == 1


def test_a_failing_command_ends_failed_with_its_exit_code(cloud_flow: Flow) -> None:
    task = cloud_flow.run(
        TaskConfig(command="echo oops >&2; exit 3", instance_type="a10", upload_code=False)
    )
    task.wait(timeout=60)
    assert task.status == TaskStatus.FAILED
    assert task.record.exit_code == 3
    assert "oops" in task.logs()


def test_cancel_a_running_task(cloud_flow: Flow, cloud: FakeMithril) -> None:
    task = cloud_flow.run(TaskConfig(command="sleep 300", instance_type="a100", upload_code=False))
    assert cloud.wait_until(
        lambda: cloud_flow.get_task(task.task_id).status == TaskStatus.RUNNING, 60
    )
    cancelled = cloud_flow.cancel(task.task_id)
    assert cancelled.status == TaskStatus.CANCELLED
    assert cloud.billing_instances() == []
