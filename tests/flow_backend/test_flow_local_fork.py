"""Local tasks started as a fork of the submitting process (``TaskConfig.fork``)."""

from __future__ import annotations

import atexit
import json
import sys
import types
from pathlib import Path

import pytest
from flow_helpers import pid_alive, wait_for, wait_for_file

from flow_backend import Flow, TaskConfig, TaskStatus

PROBE = """
import json, os, signal, sys, time
out = sys.argv[1]
json.dump({
    "forked": "flow_fork_marker" in sys.modules,
    "argv": sys.argv[1:],
    "name": __name__,
    "env": os.environ.get("FROM_CONFIG"),
    "task": os.environ.get("FLOW_TASK_ID"),
    "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
    "pid": os.getpid(),
}, open(out + ".tmp", "w"))
os.replace(out + ".tmp", out)
print("probe ran")
if sys.argv[2] == "sleep":
    time.sleep(60)
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module the task runs with ``-m``; the submitting process holds a marker module."""
    (tmp_path / "flow_fork_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "flow_fork_marker", types.ModuleType("flow_fork_marker"))
    return "flow_fork_probe"


def _config(probe: str, out: Path, how: str, **fields: object) -> TaskConfig:
    return TaskConfig(
        command=[sys.executable, "-m", probe, str(out), how],
        env={"FROM_CONFIG": "yes"},
        working_dir=str(out.parent),  # where a new interpreter finds the module
        fork=True,
        **fields,  # type: ignore[arg-type]
    )


def test_a_fork_task_runs_its_module_with_its_env_log_and_exit_code(
    flow: Flow, tmp_path: Path, probe: str
) -> None:
    written = tmp_path / "at-exit.txt"
    atexit.register(written.write_text, "the submitting process's handler")  # not the task's
    try:
        out = tmp_path / "probe.json"
        task = flow.run(_config(probe, out, "3"))
        assert task.wait(timeout=30) is TaskStatus.FAILED and task.exit_code == 3
    finally:
        atexit.unregister(written.write_text)
    seen = json.loads(out.read_text())
    assert seen["forked"] and seen["name"] == "__main__" and seen["argv"] == [str(out), "3"]
    assert seen["env"] == "yes" and seen["task"] == task.task_id and seen["sigterm_default"]
    assert "probe ran" in task.logs()
    assert not written.exists()
    # the exit code is in the task's record too: another client sees the same outcome
    other = Flow().get_task(task.task_id)
    assert other.status is TaskStatus.FAILED and other.exit_code == 3


def test_a_cancelled_fork_task_is_gone_and_a_time_limit_or_cuda_means_a_new_interpreter(
    flow: Flow, tmp_path: Path, probe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sleeper.json"
    task = flow.run(_config(probe, out, "sleep"))
    wait_for_file(out)
    pid = json.loads(out.read_text())["pid"]
    assert flow.cancel(task.task_id).status is TaskStatus.CANCELLED
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the cancelled fork task's process ends")
    limited = tmp_path / "limited.json"
    task = flow.run(_config(probe, limited, "0", max_run_time_hours=1))
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    assert not json.loads(limited.read_text())["forked"]
    # this process has initialised CUDA (PyTorch says so): a fork could not use it
    cuda = types.SimpleNamespace(is_initialized=lambda: True)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    with_cuda = tmp_path / "cuda.json"
    task = flow.run(_config(probe, with_cuda, "0"))
    assert task.wait(timeout=60) is TaskStatus.COMPLETED
    assert not json.loads(with_cuda.read_text())["forked"]
