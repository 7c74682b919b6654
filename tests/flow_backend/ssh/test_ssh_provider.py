"""The ssh provider end to end through ``Flow(provider="ssh")`` against the loopback sshd."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ssh_processes import pids_matching
from sshd import SSHServer

from flow_backend import Flow, Task, TaskStatus
from flow_backend.errors import (
    FlowError,
    InsufficientQuotaError,
    TaskNotFoundError,
    ValidationError,
)

MakeFlow = Callable[..., Flow]


@pytest.fixture
def make_flow(
    sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeFlow]:
    """Build ssh Flow clients sharing one FLOW_HOME and remote dir; stops every task after."""
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "no-config.yaml"))
    for var in ("FLOW_PROVIDER", "FLOW_HOME", "FLOW_SSH_HOSTS", "FLOW_SSH_KEY_PATH"):
        monkeypatch.delenv(var, raising=False)
    clients: list[Flow] = []

    def make(hosts: list[str] | None = None, **overrides: object) -> Flow:
        settings: dict[str, Any] = {
            "home": tmp_path / "home",
            "ssh_hosts": hosts if hosts is not None else [sshd.destination],
            "ssh_key_path": sshd.key_path,
            "ssh_remote_dir": str(tmp_path / "remote"),
            "poll_interval": 0.1,
            "stop_grace_seconds": 2.0,
        }
        settings.update(overrides)
        flow = Flow(provider="ssh", **settings)
        clients.append(flow)
        return flow

    yield make
    for flow in clients:
        for task in flow.list_tasks(active_only=True):
            with contextlib.suppress(FlowError):  # a test may have taken its host away
                task.stop()
        flow.close()


class Gate:
    """A file the tests create to let gated tasks finish (no timing assumptions)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def wait(self) -> str:
        """Shell that blocks until the gate is open."""
        return f"while [ ! -e {self.path} ]; do sleep 0.05; done"

    def open(self) -> None:
        self.path.touch()


def _task_dirs(tmp_path: Path, task: Task) -> list[Path]:
    return sorted((tmp_path / "remote" / "tasks" / task.task_id).iterdir())


def test_tasks_wait_for_a_free_host_and_report_exit_codes(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path
) -> None:
    flow = make_flow([sshd.destination, sshd.alias_destination])
    gate = Gate(tmp_path / "gate")
    stamp = f'echo "start $(date +%s.%N)"; {gate.wait}; echo "end $(date +%s.%N)"'
    tasks = [flow.run(f"{stamp}; exit {code}", upload_code=False) for code in (0, 3, 0, 0)]
    assert [t.status for t in tasks[:2]] == [TaskStatus.RUNNING] * 2
    assert [t.status for t in tasks[2:]] == [TaskStatus.PENDING] * 2  # one CPU task per host
    gate.open()
    assert [t.wait(timeout=60) for t in tasks] == [
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED,
    ]
    assert [t.exit_code for t in tasks] == [0, 3, 0, 0]
    assert tasks[1].message == "rank 0 exited with code 3"
    spans = []
    for task in tasks:
        lines = dict(line.split() for line in str(task.logs()).splitlines())
        spans.append((float(lines["start"]), float(lines["end"])))
    for start, _ in spans:  # never more than the two hosts busy at once
        assert sum(s <= start < e for s, e in spans) <= 2
    hosts = {t.record.ssh_destination for t in tasks}
    assert hosts == {sshd.destination, sshd.alias_destination}


def test_cancel_ends_the_remote_process_tree(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path
) -> None:
    flow = make_flow()
    marker = f"flowcancel{tmp_path.name}"
    task = flow.run(
        f"bash -c 'exec -a {marker} sleep 300' & bash -c 'exec -a {marker} sleep 300'",
        upload_code=False,
    )
    conn = flow.provider._pool.conn(sshd.destination)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not pids_matching(conn, marker):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert task.stop() is TaskStatus.CANCELLED
    assert pids_matching(conn, marker) == []
    assert flow.get_task(task.task_id).status is TaskStatus.CANCELLED
    assert task.exit_code is not None and task.exit_code >= 128


def test_a_waiting_task_can_be_cancelled_and_never_starts(
    make_flow: MakeFlow, tmp_path: Path
) -> None:
    flow = make_flow()
    gate = Gate(tmp_path / "gate")
    first = flow.run(gate.wait, upload_code=False)
    waiting = flow.run("echo should-not-run", upload_code=False)
    assert waiting.status is TaskStatus.PENDING
    assert waiting.stop() is TaskStatus.CANCELLED
    gate.open()
    assert first.wait(timeout=60) is TaskStatus.COMPLETED
    flow.list_tasks()  # a poll that would start waiting tasks
    assert not (tmp_path / "remote" / "tasks" / waiting.task_id).exists()
    assert flow.get_task(waiting.task_id).status is TaskStatus.CANCELLED


def test_status_logs_and_cancel_from_another_process(make_flow: MakeFlow, tmp_path: Path) -> None:
    flow = make_flow()
    task = flow.run("echo hello-from-remote; sleep 300", upload_code=False)
    settings = flow.settings
    script = textwrap.dedent(
        f"""
        import time
        from flow_backend import Flow
        flow = Flow(provider="ssh", home={str(settings.home)!r}, ssh_hosts={settings.ssh_hosts!r},
                    ssh_key_path={str(settings.ssh_key_path)!r},
                    ssh_remote_dir={settings.ssh_remote_dir!r})
        task = flow.get_task({task.task_id!r})
        print(task.status.value)
        deadline = time.monotonic() + 20
        while "hello" not in task.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        print(task.logs().strip())
        print(flow.cancel({task.task_id!r}).status.value)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split("\n")[:3] == ["running", "hello-from-remote", "cancelled"], out.stderr
    assert task.refresh().status is TaskStatus.CANCELLED


def test_nodes_get_rank_count_and_main_ip(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path
) -> None:
    flow = make_flow([sshd.destination, sshd.alias_destination])
    task = flow.run(
        'echo "$FLOW_NODE_RANK $FLOW_NUM_NODES $FLOW_MAIN_IP $FLOW_TASK_ID"',
        upload_code=False,
        num_instances=2,
    )
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    logs = [(d / "output.log").read_text().strip() for d in _task_dirs(tmp_path, task)]
    assert logs == [f"0 2 127.0.0.1 {task.task_id}", f"1 2 127.0.0.1 {task.task_id}"]
    assert task.logs().strip() == logs[0]


def test_a_failing_rank_fails_the_task_and_stops_the_others(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path
) -> None:
    flow = make_flow([sshd.destination, sshd.alias_destination])
    task = flow.run(
        '[ "$FLOW_NODE_RANK" = 1 ] && exit 9; sleep 300', upload_code=False, num_instances=2
    )
    assert task.wait(timeout=60) is TaskStatus.FAILED
    assert (task.exit_code, task.message) == (9, "rank 1 exited with code 9")
    rank0 = _task_dirs(tmp_path, task)[0]
    assert (rank0 / "stopped").exists() and (rank0 / "exit_code").exists()


def test_code_is_uploaded_once_and_results_come_back(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path
) -> None:
    code = tmp_path / "project"
    (code / "src").mkdir(parents=True)
    (code / "src" / "job.py").write_text(
        "import os, sys, pathlib\n"
        "out = pathlib.Path('outputs') / sys.argv[1]\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'result.txt').write_text(os.getcwd())\n"
    )
    (code / ".flowignore").write_text("big.bin\n")
    (code / "big.bin").write_bytes(b"0" * 1000)
    flow = make_flow([sshd.destination, sshd.alias_destination])
    tasks = [flow.run(f"{sys.executable} src/job.py run{i}", code_root=str(code)) for i in range(2)]
    assert [t.wait(timeout=60) for t in tasks] == [TaskStatus.COMPLETED] * 2
    versions = list((tmp_path / "remote" / "code").iterdir())
    assert len(versions) == 1  # same content: sent once, shared by both tasks (and "hosts")
    assert not (versions[0] / "big.bin").exists()
    tasks[1].provider.download(tasks[1].task_id, "outputs/run1", tmp_path / "back")
    assert (tmp_path / "back" / "result.txt").read_text() == str(versions[0])
    assert tasks[0].shell("ls src").split() == ["job.py"]


def test_secrets_stay_out_of_state_files_remote_files_and_reprs(
    make_flow: MakeFlow, tmp_path: Path
) -> None:
    secret = "sk-live-abcdef0123456789"
    flow = make_flow()
    gate = Gate(tmp_path / "gate")
    first = flow.run(gate.wait, upload_code=False)
    task = flow.run(
        'test -n "$WANDB_API_KEY" && echo key-present',
        upload_code=False,
        env={"WANDB_API_KEY": secret, "MITHRIL_API_KEY": secret},
    )
    assert task.status is TaskStatus.PENDING  # waits, with its env in memory only
    gate.open()
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    first.wait(timeout=60)
    assert task.logs().strip() == "key-present"
    for root in (tmp_path / "home", tmp_path / "remote"):
        for file in root.rglob("*"):
            if file.is_file():
                assert secret not in file.read_text(errors="replace"), file
    texts = [repr(task), str(task.record), task.record.model_dump_json(), repr(flow)]
    assert not any(secret in text for text in texts)


def _submit_elsewhere(flow: Flow, command: str, env: dict[str, str]) -> str:
    """Submit a task from another process that exits right away; returns its id."""
    settings = flow.settings
    script = textwrap.dedent(
        f"""
        from flow_backend import Flow
        flow = Flow(provider="ssh", home={str(settings.home)!r}, ssh_hosts={settings.ssh_hosts!r},
                    ssh_key_path={str(settings.ssh_key_path)!r},
                    ssh_remote_dir={settings.ssh_remote_dir!r})
        print(flow.run({command!r}, upload_code=False, env={env!r}).task_id)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_waiting_task_with_secrets_fails_when_its_submitter_is_gone(
    make_flow: MakeFlow,
) -> None:
    flow = make_flow()
    busy = flow.run("sleep 300", upload_code=False)
    orphan = flow.get_task(_submit_elsewhere(flow, "echo orphan", {"HF_TOKEN": "hf_x"}))
    assert orphan.status is TaskStatus.FAILED
    assert "HF_TOKEN" in (orphan.message or "") and "hf_x" not in (orphan.message or "")
    busy.stop()


def test_a_waiting_task_without_secrets_is_started_by_any_poller(make_flow: MakeFlow) -> None:
    flow = make_flow()
    busy = flow.run("sleep 300", upload_code=False)
    task_id = _submit_elsewhere(flow, 'echo "lr=$LR"', {"LR": "0.1"})
    assert flow.get_task(task_id).status is TaskStatus.PENDING
    busy.stop()
    task = flow.get_task(task_id)
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    assert task.logs() == "lr=0.1\n"


def test_run_time_limit_stops_the_task(make_flow: MakeFlow) -> None:
    flow = make_flow()
    task = flow.run("sleep 300", upload_code=False, max_run_time_hours=0.0003)  # ~1 s
    assert task.wait(timeout=60) is TaskStatus.FAILED
    assert "max_run_time_hours" in (task.message or "")


def test_gpus_are_handed_out_per_task(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU exists here: give the hosts pretend nvidia-smi indices; everything else is real.
    flow = make_flow([sshd.destination, sshd.alias_destination])
    pool = flow.provider._pool  # type: ignore[attr-defined]
    pool._gpus.update({sshd.destination: ["0", "1"], sshd.alias_destination: ["0"]})
    gate = Gate(tmp_path / "gate")
    command = f'echo "gpus=$CUDA_VISIBLE_DEVICES"; {gate.wait}'
    tasks = [flow.run(command, upload_code=False, instance_type="a100") for _ in range(4)]
    assert [t.status for t in tasks] == [TaskStatus.RUNNING] * 3 + [TaskStatus.PENDING]
    gate.open()
    assert [t.wait(timeout=60) for t in tasks] == [TaskStatus.COMPLETED] * 4
    placed = sorted((t.record.ssh_destination, t.logs().strip()) for t in tasks[:3])
    assert placed == sorted(
        [
            (sshd.destination, "gpus=0"),
            (sshd.destination, "gpus=1"),
            (sshd.alias_destination, "gpus=0"),
        ]
    )
    with pytest.raises(InsufficientQuotaError, match="needs 4 GPU"):
        flow.run("true", upload_code=False, instance_type="4xa100")


def test_polling_costs_one_round_trip_per_host(
    make_flow: MakeFlow, sshd: SSHServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = make_flow([sshd.destination, sshd.alias_destination])
    flow.provider._pool._gpus.update(  # type: ignore[attr-defined]
        {sshd.destination: ["0", "1", "2"], sshd.alias_destination: ["0", "1", "2"]}
    )
    tasks = [flow.run("sleep 300", upload_code=False, instance_type="a100") for _ in range(6)]
    assert all(t.status is TaskStatus.RUNNING for t in tasks)
    from flow_backend.providers.ssh import tracker as module

    calls: list[int] = []
    real = module.read_statuses

    def counting(conn: Any, task_dirs: list[str]) -> Any:
        calls.append(len(task_dirs))
        return real(conn, task_dirs)

    monkeypatch.setattr(module, "read_statuses", counting)
    flow.refresh_all(tasks)
    assert sorted(calls) == [3, 3]
    assert all(t.status is TaskStatus.RUNNING for t in tasks)


def test_bad_inputs_give_one_clear_error(make_flow: MakeFlow, sshd: SSHServer) -> None:
    with pytest.raises(ValidationError, match="ssh_hosts") as no_hosts:
        make_flow([]).run("true", upload_code=False)
    assert "FLOW_SSH_HOSTS" in str(no_hosts.value)
    with pytest.raises(ValidationError, match="not-a-host:port"):
        make_flow(["not-a-host:port"])
    with pytest.raises(ValidationError, match="more than once"):
        make_flow([sshd.destination, sshd.destination.rsplit(":", 1)[0] + f":{sshd.port}"])
    flow = make_flow()
    with pytest.raises(ValidationError, match="volumes"):
        flow.run("true", upload_code=False, volumes=[{"name": "data"}])
    with pytest.raises(InsufficientQuotaError, match="num_instances=2"):
        flow.run("true", upload_code=False, num_instances=2)
    with pytest.raises(ValidationError, match="code_root"):
        flow.run("true", code_root="/definitely/not/here")
    with pytest.raises(TaskNotFoundError, match="ssh-nope"):
        flow.get_task("ssh-nope")
    busy = flow.run("sleep 300", upload_code=False)
    waiting = flow.run("true", upload_code=False, image="pytorch/pytorch:latest")
    assert "image 'pytorch/pytorch:latest' is not used" in (waiting.message or "")
    with pytest.raises(ValidationError, match="no host yet"):
        waiting.shell("ls")
    assert waiting.shell_command is None and waiting.logs() == ""
    assert busy.shell_command == (f"ssh -i {sshd.key_path} -p {sshd.port} {sshd.user}@127.0.0.1")


def test_follow_streams_lines_until_the_task_ends(make_flow: MakeFlow, tmp_path: Path) -> None:
    flow = make_flow()
    gate = Gate(tmp_path / "gate")
    first = flow.run(gate.wait, upload_code=False)
    task = flow.run("for i in 1 2 3; do echo line$i; sleep 0.2; done", upload_code=False)
    assert task.status is TaskStatus.PENDING  # follow waits for it to start
    gate.open()
    assert list(task.logs(follow=True)) == ["line1\n", "line2\n", "line3\n"]
    assert first.refresh().status is TaskStatus.COMPLETED
    assert task.refresh().status is TaskStatus.COMPLETED


def test_tasks_survive_lost_connections_and_unreachable_hosts(
    make_flow: MakeFlow, sshd: SSHServer, tmp_path: Path
) -> None:
    from sshd import start_sshd, stop_sshd

    from flow_backend.remote import connect, parse_destination, stop

    other, process = start_sshd(tmp_path / "second-sshd")
    try:
        flow = make_flow([other.destination], ssh_key_path=other.key_path)
        task = flow.run("echo started; sleep 300", upload_code=False)
        flow.provider._pool.conn(other.destination).close()  # type: ignore[attr-defined]
        assert task.refresh().status is TaskStatus.RUNNING  # reconnects by itself
    finally:
        stop_sshd(process)  # open sessions outlive sshd, as on a real host: drop ours too
        flow.provider._pool.conn(other.destination).close()  # type: ignore[attr-defined]
    # The host is gone: the task keeps its last known status, and the message says why.
    assert task.refresh().status is TaskStatus.RUNNING
    assert f"cannot reach {other.destination}" in (task.message or "")
    # It still runs out there (detached): end it through the session's sshd (same machine).
    (task_dir,) = _task_dirs(tmp_path, task)
    conn = connect(parse_destination(sshd.destination), sshd.key_path)
    try:
        assert stop(conn, str(task_dir), grace_seconds=1).stopped
    finally:
        conn.close()
    assert (task_dir / "output.log").read_text().startswith("started\n")
