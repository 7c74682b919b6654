"""Detached runs over real SSH: exit-code capture, status, logs, stop, and secrets kept off disk."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from fabric import Connection
from ssh_processes import live_processes, pids_matching

from flow_backend.remote import (
    exec_command,
    follow_logs,
    read_status,
    read_statuses,
    render_detached_run,
    start_detached,
    stop,
    tail_logs,
)


def _wait_done(conn: Connection, task_dir: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not read_status(conn, task_dir).is_done:
        assert time.monotonic() < deadline, f"{task_dir} did not finish"
        time.sleep(0.1)


def test_exit_code_and_output_are_captured_after_the_session_ends(
    conn: Connection, tmp_path: Path
) -> None:
    task_dir = str(tmp_path / "task")
    pid = start_detached(conn, task_dir, "echo out; echo err >&2; sleep 0.3; exit 7")
    assert pid > 1
    _wait_done(conn, task_dir)
    status = read_status(conn, task_dir)
    assert (status.state, status.exit_code, status.pid) == ("exited", 7, pid)
    assert sorted(tail_logs(conn, task_dir).splitlines()) == ["err", "out"]
    assert (tmp_path / "task" / "exit_code").read_text().strip() == "7"


def test_command_runs_in_workdir_with_its_env(conn: Connection, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    task_dir = str(tmp_path / "task")
    start_detached(
        conn,
        task_dir,
        'pwd; echo "$GREETING"',
        {"GREETING": 'it\'s a "quoted" $HOME'},
        workdir=str(work),
    )
    _wait_done(conn, task_dir)
    assert tail_logs(conn, task_dir).splitlines() == [str(work), 'it\'s a "quoted" $HOME']


def test_missing_workdir_fails_the_task_with_a_message(conn: Connection, tmp_path: Path) -> None:
    task_dir = str(tmp_path / "task")
    start_detached(conn, task_dir, "echo never", workdir=str(tmp_path / "nope"))
    _wait_done(conn, task_dir)
    status = read_status(conn, task_dir)
    assert status.state == "exited" and status.exit_code != 0
    assert "nope" in tail_logs(conn, task_dir) and "never" not in tail_logs(conn, task_dir)


def test_statuses_of_many_tasks_in_one_call(conn: Connection, tmp_path: Path) -> None:
    done, running, never = (str(tmp_path / name) for name in ("done", "running", "never"))
    start_detached(conn, done, "exit 0")
    start_detached(conn, running, "sleep 30")
    try:
        _wait_done(conn, done)
        statuses = read_statuses(conn, [done, running, never])
        assert statuses[done].state == "exited" and statuses[done].exit_code == 0
        assert statuses[running].state == "running" and statuses[running].exit_code is None
        assert statuses[never].state == "missing"
    finally:
        stop(conn, running, grace_seconds=1)


def test_tail_returns_the_last_lines(conn: Connection, tmp_path: Path) -> None:
    task_dir = str(tmp_path / "task")
    start_detached(conn, task_dir, "for i in $(seq 1 50); do echo line$i; done")
    _wait_done(conn, task_dir)
    assert tail_logs(conn, task_dir, 3).splitlines() == ["line48", "line49", "line50"]
    assert len(tail_logs(conn, task_dir).splitlines()) == 50
    assert tail_logs(conn, str(tmp_path / "not-started"), 5) == ""


def test_follow_yields_every_line_until_the_task_ends(conn: Connection, tmp_path: Path) -> None:
    task_dir = str(tmp_path / "task")
    start_detached(
        conn, task_dir, "for i in 1 2 3 4 5; do echo step$i; sleep 0.2; done; printf tail"
    )
    lines = list(follow_logs(conn, task_dir, poll_interval=0.1))
    assert lines == [f"step{i}\n" for i in range(1, 6)] + ["tail"]
    assert read_status(conn, task_dir).state == "exited"


def test_stop_kills_the_whole_remote_process_tree(conn: Connection, tmp_path: Path) -> None:
    task_dir = str(tmp_path / "task")
    marker = f"flowstoptest{tmp_path.name}"
    # A child in the background and a grandchild that ignores TERM: KILL must end them too.
    command = (
        f"bash -c 'exec -a {marker}a sleep 300' & "
        f"bash -c 'trap \"\" TERM; exec -a {marker}b sleep 300' & "
        "wait"
    )
    start_detached(conn, task_dir, command)
    deadline = time.monotonic() + 10
    while len(pids_matching(conn, marker)) < 2:
        assert time.monotonic() < deadline, "the task's children did not start"
        time.sleep(0.1)
    status = stop(conn, task_dir, grace_seconds=0.5)
    assert pids_matching(conn, marker) == []
    assert status.stopped and status.state == "exited" and status.exit_code is not None
    assert status.exit_code >= 128  # ended by a signal


def test_stop_lets_the_command_exit_on_term(conn: Connection, tmp_path: Path) -> None:
    task_dir = str(tmp_path / "task")
    start_detached(
        conn, task_dir, "trap 'echo got TERM; exit 5' TERM; echo ready; sleep 300 & wait"
    )
    deadline = time.monotonic() + 10
    while "ready" not in tail_logs(conn, task_dir):  # its trap is set
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status = stop(conn, task_dir, grace_seconds=10)
    assert (status.state, status.exit_code, status.stopped) == ("exited", 5, True)
    assert "got TERM" in tail_logs(conn, task_dir)


def test_env_values_stay_out_of_remote_files_and_process_lists(
    conn: Connection, tmp_path: Path
) -> None:
    secret = "sk-test-0123456789abcdef"
    task_dir = tmp_path / "task"
    gate = tmp_path / "gate"
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo len=${{#MY_API_KEY}}"
    start_detached(conn, str(task_dir), command, {"MY_API_KEY": secret})
    try:
        processes = " ".join(args for _, args in live_processes(conn))
        assert "MY_API_KEY" in processes and secret not in processes  # running, key not shown
    finally:
        gate.touch()
        _wait_done(conn, str(task_dir))
    assert tail_logs(conn, str(task_dir)).strip() == f"len={len(secret)}"
    for file in task_dir.rglob("*"):
        assert secret not in file.read_text(errors="replace"), file


def test_rendered_snippet_runs_without_ssh_like_a_startup_script(tmp_path: Path) -> None:
    task_dir = tmp_path / "task"
    script = render_detached_run(str(task_dir), "echo from-startup; exit 4", env={"A": "1"})
    subprocess.run(["bash", "-c", script], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not (task_dir / "exit_code").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (task_dir / "exit_code").read_text().strip() == "4"
    assert (task_dir / "output.log").read_text() == "from-startup\n"
    assert (task_dir / "pid").read_text().strip().isdigit()


@pytest.mark.parametrize("command", ["exit 0", "false"])
def test_restart_in_the_same_folder_clears_the_old_result(
    conn: Connection, tmp_path: Path, command: str
) -> None:
    task_dir = str(tmp_path / "task")
    start_detached(conn, task_dir, "exit 9")
    _wait_done(conn, task_dir)
    start_detached(conn, task_dir, command)
    _wait_done(conn, task_dir)
    assert read_status(conn, task_dir).exit_code == (0 if command == "exit 0" else 1)


def test_stop_also_ends_a_tree_whose_pid_leads_no_group(conn: Connection, tmp_path: Path) -> None:
    # Like a cloud startup script: the pid file holds a plain background shell, not a session.
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    marker = f"flownogroup{tmp_path.name}"
    exec_command(
        conn,
        "bash -s",
        stdin=(
            f"nohup bash -c 'echo $$ > {task_dir}/pid; bash -c \"exec -a {marker} sleep 300\"' "
            f"> {task_dir}/output.log 2>&1 < /dev/null &\n"
        ).encode(),
    )
    deadline = time.monotonic() + 10
    while not pids_matching(conn, marker):
        assert time.monotonic() < deadline, "the tree did not start"
        time.sleep(0.1)
    status = stop(conn, str(task_dir), grace_seconds=1)
    assert pids_matching(conn, marker) == []
    assert status.stopped and status.is_done
