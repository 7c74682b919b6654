"""The ``flow`` CLI: real subprocesses for cross-process control, in-process for the rest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flow_helpers import pid_alive, run_flow_cli, wait_for_file

from flow_backend import Flow, TaskStatus
from flow_backend.cli import main

pytestmark = pytest.mark.usefixtures("flow_home")

TASK_ID = re.compile(r"local-[0-9a-f]+-[0-9a-f]+")


def _started_id(stderr: str) -> str:
    match = TASK_ID.search(stderr)
    assert match, f"no task id in: {stderr!r}"
    return match.group(0)


def test_status_and_cancel_from_other_processes(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = run_flow_cli(
        "run", f"sleep 60 & echo $! > {pid_file}; wait", "--name", "cross", check=True
    )
    task_id = _started_id(started.stderr)
    grandchild = int(wait_for_file(pid_file))
    status = run_flow_cli("status", "--json", check=True)
    rows = json.loads(status.stdout)
    assert [(row["task_id"], row["status"]) for row in rows] == [(task_id, "running")]
    one = json.loads(run_flow_cli("status", task_id, "--json", check=True).stdout)
    assert one["name"].startswith("cross-") and one["provider"] == "local"
    cancelled = run_flow_cli("cancel", task_id, check=True)
    assert f"{task_id}: cancelled" in cancelled.stdout
    assert not pid_alive(grandchild)
    with Flow() as client:
        assert client.get_task(task_id).status is TaskStatus.CANCELLED


def test_cli_cancels_a_task_started_in_this_process(flow: Flow) -> None:
    task = flow.run("sleep 60")
    assert run_flow_cli("cancel", task.task_id, check=True).returncode == 0
    assert task.refresh().status is TaskStatus.CANCELLED
    assert task.wait(timeout=5) is TaskStatus.CANCELLED


def test_run_wait_streams_logs_and_returns_the_exit_code() -> None:
    result = run_flow_cli("run", "--wait", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert "out\n" in result.stdout
    assert "failed" in result.stderr and "exited with code 3" in result.stderr


def test_run_argv_after_double_dash_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run", "--wait", "--env", "GREETING=hi there", "--", "sh", "-c", 'echo "$GREETING"']
    )
    assert code == 0
    assert capsys.readouterr().out == "hi there\n"


def test_dry_run_starts_nothing(capsys: pytest.CaptureFixture[str], flow: Flow) -> None:
    assert main(["run", "--dry-run", "-i", "h100", "python train.py"]) == 0
    out = capsys.readouterr().out
    assert "python train.py" in out and "h100-80gb.sxm.8x" in out
    assert "$0.00/h on local" in out and "$25.60/h" in out
    assert flow.list_tasks() == []


def test_run_task_yaml_with_option_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: from-yaml\ncommand: echo $WHO on $FLOW_INSTANCE_TYPE\nenv:\n  WHO: yaml\n"
    )
    assert main(["run", str(path), "--env", "WHO=cli", "-i", "a10", "--wait"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "cli on a10-24gb.pcie.1x\n"
    assert "from-yaml-" in captured.err


def test_logs_tail_and_follow(flow: Flow, capsys: pytest.CaptureFixture[str]) -> None:
    task = flow.run("for i in 1 2 3 4; do echo l$i; done")
    task.wait()
    assert main(["logs", task.task_id, "-n", "2"]) == 0
    assert capsys.readouterr().out == "l3\nl4\n"
    running = flow.run("echo a; sleep 0.3; echo b")
    assert main(["logs", running.task_id, "-f"]) == 0
    assert capsys.readouterr().out == "a\nb\n"


def test_cancel_all_and_sweep(flow: Flow, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_a = [flow.run("sleep 60", name=f"hf-sweepa-{n}", unique_name=False) for n in range(2)]
    sweep_b = flow.run("sleep 60", name="hf-sweepb-0", unique_name=False)
    assert main(["cancel", "--sweep", "sweepa"]) == 0
    assert [t.refresh().status for t in sweep_a] == [TaskStatus.CANCELLED] * 2
    assert sweep_b.refresh().status is TaskStatus.RUNNING
    assert main(["cancel", "--all"]) == 0
    assert sweep_b.refresh().status is TaskStatus.CANCELLED
    capsys.readouterr()
    assert main(["cancel", "--all"]) == 0
    assert "No live task" in capsys.readouterr().err


def test_status_table_and_ssh(
    flow: Flow, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = flow.run("sleep 60", name="tabled", working_dir=str(tmp_path))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert task.task_id in out and "running" in out and "tabled-" in out
    assert main(["ssh", task.task_id, "--", "pwd"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path.resolve())


def test_instance_types_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["instance-types"]) == 0
    table = capsys.readouterr().out
    assert "h100-80gb.sxm.8x" in table and "$25.60" in table and "8× H100 80GB" in table
    assert main(["instance-types", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"a100-80gb.sxm.1x", "cpu"} <= {row["name"] for row in rows}
    assert all({"gpu_count", "gpu_memory_gb", "price_per_hour"} <= row.keys() for row in rows)


def test_volumes_commands(capsys: pytest.CaptureFixture[str], flow_home: Path) -> None:
    assert main(["volumes", "create", "data", "--size", "20"]) == 0
    assert main(["volumes", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == [
        {"name": "data", "size_gb": 20.0, "location": str(flow_home / "volumes" / "data")}
    ]
    assert main(["volumes", "delete", "data"]) == 0
    assert not (flow_home / "volumes" / "data").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "-i", "a1000", "python x.py"], "Unknown instance_type 'a1000'"),
        (["run", "--max-run-time", "0", "x"], "max_run_time_hours"),
        (["run", "--env", "NOEQUALS", "x"], "--env expects KEY=VALUE"),
        (["run", "nosuchfile.yaml"], "task file 'nosuchfile.yaml' does not exist"),
        (["run", "--dry-run", "conf/missing.yml"], "task file 'conf/missing.yml' does not exist"),
        (["status", "local-0-0"], "No local task with id 'local-0-0'"),
        (["logs", "nope"], "No local task with id 'nope'"),
        (["cancel"], "exactly one of"),
        (
            ["--provider", "nope", "status"],
            "'nope': unknown provider; valid providers are local, mithril, ssh",
        ),
        (["volumes", "delete", "ghost"], "No volume named 'ghost'"),
    ],
)
def test_errors_print_one_line_and_exit_non_zero(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("flow: error: ")
    assert "Traceback" not in captured.err


def test_malformed_config_file_in_a_subprocess(tmp_path: Path) -> None:
    (tmp_path / "flow-config.yaml").write_text("provider: [local\n")
    result = run_flow_cli("status")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not valid YAML" in result.stderr and "flow-config.yaml" in result.stderr


def test_unusable_flow_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FLOW_HOME", str(blocker / "home"))
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "FLOW_HOME" in err and str(blocker / "home") in err and "Traceback" not in err


_MODULES_AFTER_HELP = """
import contextlib, io, sys
from flow_backend.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["--help"])
print(" ".join(sorted(m for m in sys.modules if m.startswith(("flow_backend.testing", "httpx")))))
"""


def test_help_does_not_load_the_fake_server_or_the_http_client() -> None:
    # every `flow` command builds the whole parser; `fake-mithril` loads its server only when run
    loaded = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER_HELP],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.split() == []
