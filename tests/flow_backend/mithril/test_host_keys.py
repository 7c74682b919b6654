"""Host keys of cloud instances, over real SSH: every fake instance runs its own sshd with a host
key of its own (``flow_backend.testing.fake_sshd``), as every real instance does."""

from __future__ import annotations

from pathlib import Path

import paramiko

from flow_backend import Flow, TaskConfig
from flow_backend.models import TaskStatus
from flow_backend.testing import FakeMithril


def _recorded(known_hosts: Path) -> dict[str, str]:
    """alias → base64 of the key the provider trusted for it."""
    keys = paramiko.HostKeys(str(known_hosts))
    return {alias: key.get_base64() for alias in keys for key in keys[alias].values()}


def _run(flow: Flow, command: str) -> tuple[str, str]:
    """Run ``command`` to its end; its task id and output."""
    task = flow.run(TaskConfig(command=command, instance_type="a100", upload_code=False))
    assert task.wait(timeout=60) is TaskStatus.COMPLETED, f"{task.message}\n{task.logs()}"
    return task.task_id, task.logs()


def test_a_new_instance_on_a_reused_address_has_its_own_key_and_is_trusted(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    first, _ = _run(cloud_flow, "echo first")
    [old] = cloud.instances_of(first)
    second, output = _run(cloud_flow, "echo second")  # its instance gets the freed address
    [new] = cloud.instances_of(second)
    assert new.ssh_destination == old.ssh_destination and new.fid != old.fid
    assert cloud.host_key(new.fid) != cloud.host_key(old.fid)
    assert output == "second\n"
    recorded = _recorded(tmp_path / "flow-home" / "known_hosts")
    # each key is bound to its instance id, as each instance's own sshd presented it
    assert recorded[f"mithril:{old.fid}"] == cloud.host_key(old.fid).split()[1]
    assert recorded[f"mithril:{new.fid}"] == cloud.host_key(new.fid).split()[1]


def test_a_changed_key_on_the_same_instance_is_refused_and_the_bid_cancelled(
    cloud_flow: Flow, cloud: FakeMithril, tmp_path: Path
) -> None:
    marker = tmp_path / "still-running"
    task = cloud_flow.run(
        TaskConfig(
            command=f"touch {marker}; sleep 60; echo not-reached",
            instance_type="a100",
            upload_code=False,
        )
    )
    # polling feeds the node its environment (the command starts over SSH)
    assert cloud.wait_until(lambda: bool(task.refresh()) and marker.exists(), timeout=60), (
        task.message
    )
    [instance] = cloud.instances_of(task.task_id)
    trusted = cloud.host_key(instance.fid)
    cloud.replace_host_key(instance.fid)  # someone else answers at the address: connections cut
    assert cloud.host_key(instance.fid) != trusted
    assert task.wait(timeout=60) is TaskStatus.FAILED
    assert "refused the instance over SSH" in (task.message or "")
    assert f"host key of mithril:{instance.fid}" in (task.message or "")
    assert cloud.bid(task.task_id)["status"] == "Terminated"  # nothing bills on
    # the key first trusted stays recorded: the impostor's was never accepted
    recorded = _recorded(tmp_path / "flow-home" / "known_hosts")
    assert recorded[f"mithril:{instance.fid}"] == trusted.split()[1]
