"""The ``flow`` command line against the fake Mithril (and the loopback sshd), as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sshd import SSHServer

from flow_backend.testing import FakeMithril


def cli_env(cloud: FakeMithril, sshd: SSHServer, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MITHRIL_")}
    env.update(cloud.env)
    env.update(
        FLOW_PROVIDER="mithril",
        FLOW_SSH_KEY_PATH=str(sshd.key_path),
        FLOW_HOME=str(tmp_path / "flow-home"),
        FLOW_CONFIG_PATH=str(tmp_path / "no-config.yaml"),
        FLOW_POLL_INTERVAL="0.2",
    )
    return env


def flow(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flow_backend.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_wait_status_and_logs(cloud: FakeMithril, sshd: SSHServer, tmp_path: Path) -> None:
    env = cli_env(cloud, sshd, tmp_path)
    ran = flow(
        env, "run", "-i", "a100", "--name", "demo", "--wait", "--", "echo", "hi there", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert "hi there" in ran.stdout
    status = flow(env, "status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert '"completed"' in status.stdout
    assert cloud.api_key not in ran.stdout + ran.stderr + status.stdout + status.stderr


def test_cancel_sweep_after_the_launcher_was_killed(
    cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    env = cli_env(cloud, sshd, tmp_path)
    launcher = textwrap.dedent(
        """
        import sys, time
        from flow_backend import Flow, TaskConfig
        with Flow() as flow:
            tasks = [flow.run(TaskConfig(name=f"hf-sweep42-{i}", unique_name=False,
                                         command="sleep 300", instance_type="a100",
                                         upload_code=False)) for i in range(2)]
            ids = [t.task_id for t in tasks]
            while not all(r.status.value == "running" for r in flow.provider.get_many(ids).values()):
                time.sleep(0.2)
            print("running", flush=True)
            time.sleep(300)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert len(cloud.billing_instances()) == 2  # the killed launcher left them billing
    cancelled = flow(env, "cancel", "--sweep", "sweep42", cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.count("cancelled") == 2
    assert cloud.billing_instances() == []


def test_instance_types_show_the_live_catalog_and_run_needs_one(
    cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    env = cli_env(cloud, sshd, tmp_path)
    listed = flow(env, "instance-types", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {
        "a100-80gb.sxm.1x",
        "a100-80gb.sxm.2x",
        "a100-80gb.sxm.4x",
        "a100-80gb.sxm.8x",
        "h100-80gb.sxm.8x",
        "h200.8x",
        "b200-192gb.8x",
    }
    assert rows["h100-80gb.sxm.8x"]["price_per_hour"] == 22.0  # the cheaper of its two ids
    assert "a100" in rows["a100-80gb.sxm.1x"]["short_names"]
    for dry in ([], ["--dry-run"]):
        refused = flow(env, "run", *dry, "--", "python", "train.py", cwd=tmp_path)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "no instance type given" in refused.stderr and "h200.8x" in refused.stderr
    planned = flow(env, "run", "--dry-run", "-i", "a100", "--", "python", "train.py", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "price:         $1.60/h" in planned.stdout  # the spot price now
    assert "limit price:   $2.00/h per instance" in planned.stdout  # × 1.25
    assert cloud.bids() == []


def test_run_without_wait_starts_the_command_and_ends_its_bid(
    cloud: FakeMithril, sshd: SSHServer, tmp_path: Path
) -> None:
    env = cli_env(cloud, sshd, tmp_path)
    ran = flow(
        env, "run", "-i", "a100", "--", "sh", "-c", "sleep 1; echo from-detached", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr  # returned at once: the shell is free
    (bid,) = cloud.bids()
    assert bid["fid"] in ran.stderr and "keeper (pid" in ran.stderr
    keeper = int(re.search(r"keeper \(pid (\d+)\)", ran.stderr).group(1))  # type: ignore[union-attr]
    # the command runs although `flow run` has exited; its bid is cancelled once it ended
    assert cloud.wait_until(lambda: cloud.bid(bid["fid"])["status"] == "Terminated", timeout=90)
    assert cloud.billing_instances() == []
    logs = flow(env, "logs", bid["fid"], cwd=tmp_path)
    assert logs.stdout == "from-detached\n", logs.stderr
    status = flow(env, "status", "--json", cwd=tmp_path)
    assert '"completed"' in status.stdout
    assert cloud.wait_until(lambda: not _alive(keeper), timeout=30)  # the keeper is gone too
    keeper_log = tmp_path / "flow-home" / "mithril" / "tasks" / bid["fid"] / "keeper.log"
    assert cloud.api_key not in keeper_log.read_text() + ran.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
