"""Logs, following, shell and downloads of a running Mithril task, over the loopback sshd."""

from __future__ import annotations

import threading
from pathlib import Path

from flow_backend import Flow, TaskConfig
from flow_backend.models import TaskStatus
from flow_backend.testing import FakeMithril


def test_logs_follow_shell_and_download_while_running(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    command = (
        "echo first; echo result > result.txt; "
        f"while [ ! -f {release} ]; do sleep 0.1; done; echo last"
    )
    task = cloud_flow.run(TaskConfig(command=command, instance_type="a100", upload_code=False))
    provider = cloud_flow.provider
    assert cloud.wait_until(lambda: provider.logs(task.task_id) == "first\n", timeout=60)
    assert provider.get(task.task_id).status == TaskStatus.RUNNING

    assert provider.shell(task.task_id, "cat result.txt").strip() == "result"
    line = provider.shell_command(task.task_id)
    assert line is not None and line.startswith("ssh -i ") and "-p " in line

    provider.download(task.task_id, "result.txt", tmp_path / "copy.txt")
    assert (tmp_path / "copy.txt").read_text() == "result\n"

    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(provider.follow_logs(task.task_id)))
    reader.start()
    release.touch()
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert followed == ["first\n", "last\n"]
    final = provider.get(task.task_id)
    assert final.status == TaskStatus.COMPLETED
    assert provider.logs(task.task_id, tail=1) == "last\n"  # from the collected copy
    assert cloud.bid(task.task_id)["status"] == "Terminated"
