"""A task end to end on the fake Mithril, with a real loopback sshd for the SSH side."""

from __future__ import annotations

from pathlib import Path

import pytest
from sshd import SSHServer

from flow_backend import Flow, TaskConfig
from flow_backend.models import TaskStatus
from flow_backend.providers.mithril.provider import MithrilProvider
from flow_backend.settings import load_settings
from flow_backend.testing import FakeMithril


def test_a_task_runs_completes_and_stops_billing(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    # the API's clock is an hour behind this machine's: an instance allocated now reads as an
    # hour old, which must not count against the boot limit (it is measured on the API's clock)
    cloud.settings.clock_offset = -3600.0
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
        TaskConfig(command="echo oops >&2; exit 3", instance_type="a100", upload_code=False)
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


def test_ssh_user_and_remote_root_come_from_the_settings(
    sshd: SSHServer, tmp_path: Path, remote_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the instances report "host:port" without a user: the provider adds mithril_ssh_user
    with FakeMithril(
        tmp_path / "fake",
        ssh_destination=f"{sshd.host}:{sshd.port}",
        provisioning_delay=0.1,
        boot_delay=0.1,
    ) as cloud:
        other_root = tmp_path / "other-remote"
        monkeypatch.setenv("MITHRIL_SSH_USER", sshd.user)
        monkeypatch.setenv("FLOW_MITHRIL_REMOTE_ROOT", str(other_root))
        monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "no-config.yaml"))
        settings = load_settings(
            provider="mithril",
            home=tmp_path / "flow-home",
            mithril_api_key=cloud.api_key,
            mithril_api_url=cloud.url,
            ssh_key_path=sshd.key_path,
            poll_interval=0.2,
        )
        with Flow(MithrilProvider(settings)) as flow:
            task = flow.run(
                TaskConfig(
                    name="hf-user", unique_name=False, command="echo hi", instance_type="a100"
                )
            )
            assert task.wait(timeout=60) is TaskStatus.COMPLETED, task.logs()
            # the instance's own address (a port of its own), with the user from the settings
            assert (task.record.ssh_destination or "").startswith(f"{sshd.user}@127.0.0.1:")
            assert task.logs() == "hi\n"
        # the node folder was made under the root from the settings (the task's folder is
        # cleaned up once its result is home)
        assert other_root.is_dir() and not remote_root.exists()
        assert cloud.billing_instances() == []
