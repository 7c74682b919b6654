"""Stopping a local task ends its whole process tree, including stubborn and regrouped children."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flow_helpers import pid_alive, wait_for, wait_for_file

from flow_backend import Flow, TaskStatus

PY = sys.executable


def test_stop_ends_children_and_grandchildren(flow: Flow, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # child shell → background grandchild + foreground sleep; each writes its pid
    command = f"sh -c 'sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; sleep 60' & echo $! >> {pids}; wait"
    task = flow.run(command)
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= 3, what="three pids")
    tree = [int(pid) for pid in pids.read_text().split()]
    assert all(pid_alive(pid) for pid in tree)
    assert task.stop() is TaskStatus.CANCELLED
    assert [pid for pid in tree if pid_alive(pid)] == []
    assert "cancelled by user" in task.logs()


def test_child_ignoring_sigterm_is_killed_after_the_grace_period(
    flow: Flow, tmp_path: Path
) -> None:
    pid_file = tmp_path / "stubborn.pid"
    code = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    task = flow.run([PY, "-c", code])
    pid = int(wait_for_file(pid_file))
    started = time.monotonic()
    assert task.stop() is TaskStatus.CANCELLED
    assert time.monotonic() - started >= 0.9, "SIGKILL came before the 1 s grace period"
    assert not pid_alive(pid)


def test_child_in_its_own_process_group_is_still_stopped(flow: Flow, tmp_path: Path) -> None:
    pid_file = tmp_path / "regrouped.pid"
    code = (
        "import os, time; os.setpgrp(); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    task = flow.run(f'{PY} -c "{code}" & wait')
    pid = int(wait_for_file(pid_file))
    assert task.stop() is TaskStatus.CANCELLED
    assert not pid_alive(pid)


def test_stop_from_a_second_client_ends_the_tree(flow: Flow, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = flow.run(f"sleep 60 & echo $! > {pid_file}; wait")
    pid = int(wait_for_file(pid_file))
    with Flow() as other:
        assert other.cancel(task.task_id).status is TaskStatus.CANCELLED
    assert not pid_alive(pid)
    assert task.refresh().status is TaskStatus.CANCELLED
