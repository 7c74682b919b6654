"""The slurm provider on a login node over SSH (``slurm_login``): the session's loopback sshd in
front of the session's one-node SLURM cluster."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import SSHServer

from flow_backend import Flow
from flow_backend.models import TaskStatus
from flow_backend.providers.slurm import SlurmProvider
from flow_backend.providers.slurm.cluster import SlurmCluster


@pytest.fixture
def remote_flow(
    slurm: SlurmCluster, sshd: SSHServer, flow_home: Path, tmp_path: Path
) -> Iterator[Flow]:
    """A client submitting through ``ssh root@127.0.0.1:PORT``; live tasks cancelled at the end."""
    client = Flow(
        provider="slurm",
        slurm_login=sshd.destination,
        ssh_key_path=sshd.key_path,
        slurm_conf=slurm.conf,
        slurm_dir=tmp_path / "login-node",
        poll_interval=0.2,
    )
    yield client
    live = [task.task_id for task in client.list_tasks(active_only=True)]
    assert isinstance(client.provider, SlurmProvider)
    if live:
        client.provider.cancel_many(live)
    client.close()


def test_tasks_over_ssh_upload_code_and_keep_secrets_out_of_files(
    remote_flow: Flow, tmp_path: Path
) -> None:
    provider = remote_flow.provider
    assert isinstance(provider, SlurmProvider) and not provider.shares_files
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text("shipped with the code\n")
    secret = "tok-" + secrets.token_hex(8)
    task = remote_flow.run(
        'cat data.txt; pwd; test "$MY_TOKEN" = "$EXPECTED_TOKEN" && echo token-ok; exit 2',
        code_root=str(project),
        env={"MY_TOKEN": secret, "EXPECTED_TOKEN": secret},
    )
    assert task.wait(timeout=90) is TaskStatus.FAILED
    assert task.exit_code == 2 and "exited with code 2" in (task.message or "")
    log = task.logs()
    assert "shipped with the code" in log
    assert "token-ok" in log  # the secret arrived, through sbatch's environment only
    assert str(tmp_path / "login-node" / "code") in log  # ran in the uploaded snapshot
    lines = [line.strip() for line in task.logs(follow=True)]
    assert "shipped with the code" in lines
    out = tmp_path / "back" / "data.txt"
    provider.download(task.task_id, "data.txt", out)
    assert out.read_text() == "shipped with the code\n"
    for root in (tmp_path / "login-node", Path(os.environ["FLOW_HOME"])):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path


def test_secret_env_reaches_the_job_over_ssh(remote_flow: Flow, tmp_path: Path) -> None:
    secret = "tok-" + secrets.token_hex(8)
    seen = tmp_path / "seen.txt"
    task = remote_flow.run(
        f'printf %s "$MY_TOKEN" > {seen}', env={"MY_TOKEN": secret}, upload_code=False
    )
    assert task.wait(timeout=90) is TaskStatus.COMPLETED
    assert seen.read_text() == secret


def test_cancel_over_ssh_ends_the_job(remote_flow: Flow) -> None:
    provider = remote_flow.provider
    assert isinstance(provider, SlurmProvider)
    task = remote_flow.run("echo started; sleep 60", upload_code=False)
    before = provider.login.calls["squeue"]
    assert task.refresh().status in (TaskStatus.PENDING, TaskStatus.RUNNING)
    assert provider.login.calls["squeue"] == before + 1
    assert task.stop() is TaskStatus.CANCELLED
    assert remote_flow.get_task(task.task_id).status is TaskStatus.CANCELLED
    assert remote_flow.list_tasks(active_only=True) == []
