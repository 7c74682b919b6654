"""The local provider with real processes: run, wait, logs, exit codes, env, ranks, limits."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from flow_helpers import pid_alive, wait_for, wait_for_file

from flow_backend import Flow, Task, TaskConfig, TaskStatus, run
from flow_backend.errors import TaskNotFoundError, TaskTimeoutError, ValidationError

PY = sys.executable


def test_completed_task_keeps_interleaved_output(flow: Flow) -> None:
    task = flow.run("echo one; echo two >&2; echo three", name="hello")
    assert task.task_id.startswith("local-") and task.name.startswith("hello-")
    assert task.wait() is TaskStatus.COMPLETED
    assert task.status is TaskStatus.COMPLETED and task.exit_code == 0
    assert task.logs() == "one\ntwo\nthree\n"
    assert task.logs(tail=2) == "two\nthree\n"
    assert task.cost_per_hour == "$0.00" and task.total_cost == "$0.00"
    assert not task.is_running
    assert task.record.started_at is not None and task.record.ended_at is not None


def test_failed_task_keeps_its_exit_code_and_says_why(flow: Flow) -> None:
    task = flow.run(f"{PY} -c 'import sys; print(\"bye\"); sys.exit(7)'")
    assert task.wait() is TaskStatus.FAILED
    assert task.exit_code == 7
    assert task.message is not None and "exited with code 7" in task.message
    assert "bye" in task.logs()


def test_argv_command_is_not_split_by_a_shell(flow: Flow, tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    code = "import json,sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"
    task = flow.run([PY, "-c", code, str(out), "two words", "$HOME"])
    assert task.wait() is TaskStatus.COMPLETED
    assert json.loads(out.read_text()) == [str(out), "two words", "$HOME"]


def test_environment_has_user_config_and_flow_variables(
    flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_USER_ENV", "user")
    out = tmp_path / "env.json"
    names = [
        "FROM_USER_ENV",
        "FROM_CONFIG",
        "FLOW_TASK_ID",
        "FLOW_TASK_NAME",
        "FLOW_NODE_RANK",
        "FLOW_NUM_NODES",
        "FLOW_MAIN_IP",
    ]
    code = f"import json,os; json.dump({{n: os.environ.get(n) for n in {names!r}}}, open({str(out)!r}, 'w'))"
    task = flow.run([PY, "-c", code], env={"FROM_CONFIG": "config"}, name="envcheck")
    assert task.wait() is TaskStatus.COMPLETED
    env = json.loads(out.read_text())
    assert env == {
        "FROM_USER_ENV": "user",
        "FROM_CONFIG": "config",
        "FLOW_TASK_ID": task.task_id,
        "FLOW_TASK_NAME": task.name,
        "FLOW_NODE_RANK": "0",
        "FLOW_NUM_NODES": "1",
        "FLOW_MAIN_IP": "127.0.0.1",
    }


def test_working_dir_is_used_and_a_missing_one_is_refused(flow: Flow, tmp_path: Path) -> None:
    task = flow.run("pwd", working_dir=str(tmp_path))
    task.wait()
    assert task.logs().strip() == str(tmp_path.resolve())
    with pytest.raises(ValidationError, match="working_dir='/no/such/dir'"):
        flow.run("pwd", working_dir="/no/such/dir")


def test_num_instances_starts_one_process_per_rank(flow: Flow, tmp_path: Path) -> None:
    command = (
        f"echo $FLOW_NODE_RANK/$FLOW_NUM_NODES/$FLOW_MAIN_IP > {tmp_path}/rank-$FLOW_NODE_RANK"
    )
    task = flow.run(command, num_instances=4)
    assert task.wait() is TaskStatus.COMPLETED
    ranks = sorted((tmp_path / f"rank-{r}").read_text().strip() for r in range(4))
    assert ranks == [f"{r}/4/127.0.0.1" for r in range(4)]


def test_task_with_ranks_ends_when_all_end_and_fails_if_one_fails(
    flow: Flow, tmp_path: Path
) -> None:
    marker = tmp_path / "slow-rank-done"
    command = f'if [ "$FLOW_NODE_RANK" = 1 ]; then exit 3; fi; sleep 0.5; touch {marker}'
    task = flow.run(command, num_instances=3)
    assert task.wait() is TaskStatus.FAILED
    assert marker.exists(), "the task ended before its slowest rank"
    assert task.exit_code == 3 and task.message is not None and "rank 1" in task.message


def test_wait_timeout_raises_timeout_error_and_task_keeps_running(flow: Flow) -> None:
    task = flow.run("sleep 30")
    with pytest.raises(TaskTimeoutError) as caught:
        task.wait(timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    assert task.task_id in str(caught.value)
    assert task.refresh().status is TaskStatus.RUNNING and task.is_running
    assert task.stop() is TaskStatus.CANCELLED


def test_time_limit_stops_the_task_and_fails_it_with_the_reason(flow: Flow, tmp_path: Path) -> None:
    task = flow.run(
        f"echo started; sleep 30; touch {tmp_path}/not-stopped", max_run_time_hours=0.6 / 3600
    )
    assert task.wait(timeout=30) is TaskStatus.FAILED
    assert task.message is not None and "max_run_time_hours" in task.message
    assert "max_run_time_hours" in task.logs() and "started" in task.logs()
    assert not (tmp_path / "not-stopped").exists()


def test_killed_process_fails_with_a_clear_message(flow: Flow, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = flow.run(f"echo $$ > {pid_file}; sleep 30")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid file")
    session = os.getsid(int(pid_file.read_text()))
    os.killpg(session, signal.SIGKILL)
    assert task.wait(timeout=20) is TaskStatus.FAILED
    assert task.exit_code is None
    assert task.message is not None and "without an exit code" in task.message
    assert "SIGKILL" in task.message


def test_vanished_wrapper_takes_its_leftovers_down(flow: Flow, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = flow.run(f"sleep 60 & echo $! > {pid_file}; wait")
    leftover = int(wait_for_file(pid_file))
    with Flow() as other:  # another process sees the wrapper killed, not by Flow
        os.kill(os.getsid(leftover), signal.SIGKILL)  # the session leader is the wrapper
        wait_for(lambda: other.get_task(task.task_id).status is TaskStatus.FAILED, what="failed")
    # SIGKILL is sent by then; a loaded machine may take a moment to end the process (the
    # leftover would otherwise sleep on for a minute)
    wait_for(lambda: not pid_alive(leftover), timeout=10, what="the leftover `sleep 60` ended")


def test_outcome_is_visible_from_a_second_client(flow: Flow) -> None:
    task = flow.run("exit 5")
    task.wait()
    with Flow() as other:
        seen = other.get_task(task.task_id)
    assert (seen.status, seen.exit_code, seen.name) == (TaskStatus.FAILED, 5, task.name)


def test_list_get_and_unknown_ids(flow: Flow) -> None:
    first = flow.run("true", name="first")
    second = flow.run("true", name="second")
    for task in (first, second):
        task.wait()
    listed = [task.task_id for task in flow.list_tasks()]
    assert listed[:2] == [second.task_id, first.task_id]
    assert [t.task_id for t in flow.list_tasks(name_prefix="first")] == [first.task_id]
    assert flow.list_tasks(active_only=True) == []
    for bad in ("local-nope", "../etc", ""):
        with pytest.raises(TaskNotFoundError):
            flow.get_task(bad)
    with pytest.raises(TaskNotFoundError, match="local-nope"):
        flow.cancel("local-nope")


def test_cancel_of_an_ended_task_changes_nothing(flow: Flow) -> None:
    task = flow.run("true")
    task.wait()
    assert flow.cancel(task.task_id).status is TaskStatus.COMPLETED


def test_refresh_all_uses_one_get_many_call(flow: Flow, mocker: object) -> None:
    tasks = [flow.run(f"exit {code}") for code in (0, 1, 2)]
    for task in tasks:
        task.wait()
    stale = [
        Task(task.record.model_copy(update={"status": TaskStatus.RUNNING}), flow.provider)
        for task in tasks
    ]
    spy = mocker.spy(flow.provider, "get_many")  # type: ignore[attr-defined]
    flow.refresh_all(stale)
    assert spy.call_count == 1
    assert [task.status for task in stale] == [
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.FAILED,
    ]


def test_submitting_from_threads(flow: Flow) -> None:
    tasks: list[Task] = []
    lock = threading.Lock()

    def submit(worker: int) -> None:
        for index in range(5):
            task = flow.run(f"echo {worker}-{index}", name=f"w{worker}")
            with lock:
                tasks.append(task)

    threads = [threading.Thread(target=submit, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({task.task_id for task in tasks}) == 20
    assert all(task.wait() is TaskStatus.COMPLETED for task in tasks)
    assert sorted(task.logs().strip() for task in tasks) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(5)
    )


def test_follow_logs_yields_lines_until_the_end(flow: Flow) -> None:
    task = flow.run("for i in 1 2 3; do echo line$i; sleep 0.1; done")
    lines = list(task.logs(follow=True))
    assert lines == ["line1\n", "line2\n", "line3\n"]
    assert task.refresh().status is TaskStatus.COMPLETED


def test_image_and_missing_gpus_are_reported_honestly(flow: Flow) -> None:
    task = flow.run("sleep 0.1", instance_type="a100", image="pytorch/pytorch:2.1.0")
    assert task.message is not None
    assert "no containers" in task.message and "runs on the CPU" in task.message
    assert task.wait() is TaskStatus.COMPLETED
    assert "pytorch/pytorch:2.1.0" in task.logs()
    assert task.instance_type == "a100-80gb.sxm.1x"


def test_shell_endpoints_and_repr(flow: Flow, tmp_path: Path) -> None:
    task = flow.run(
        "sleep 30", working_dir=str(tmp_path), ports=[8888], env={"SECRET_TOKEN": "s3cr3t"}
    )
    assert task.shell("pwd").strip() == str(tmp_path.resolve())
    assert task.shell("echo $FLOW_TASK_ID").strip() == task.task_id
    assert task.shell_command is not None and str(tmp_path.resolve()) in task.shell_command
    assert task.endpoints == {"port-8888": "http://127.0.0.1:8888"}
    assert task.task_id in repr(task) and "s3cr3t" not in repr(task)
    spec_text = (Path(os.environ["FLOW_HOME"]) / "tasks" / f"{task.task_id}.jsonl").read_text()
    assert "SECRET_TOKEN" in spec_text and "s3cr3t" not in spec_text
    task.stop()


def test_module_level_run_uses_settings(flow_home: Path) -> None:
    task = run("echo shortcut", name="short")
    assert task.wait() is TaskStatus.COMPLETED
    assert task.logs() == "shortcut\n"
    assert (flow_home / "tasks" / f"{task.task_id}.log").read_text() == "shortcut\n"


def test_run_accepts_a_config_with_overrides(flow: Flow) -> None:
    config = TaskConfig(command="echo $GREETING", env={"GREETING": "hi"}, name="cfg")
    task = flow.run(config, env={"GREETING": "override"})
    task.wait()
    assert task.logs() == "override\n"
    assert task.name == config.name


def test_stopped_task_processes_are_gone(flow: Flow, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = flow.run(f"echo $$ > {pid_file}; exec sleep 30")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid file")
    pid = int(pid_file.read_text())
    assert task.stop() is TaskStatus.CANCELLED
    assert not pid_alive(pid)
    assert task.message == "cancelled by user"


def test_time_limit_is_enforced_at_refresh_without_coreutils_timeout(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flow_backend.providers.local import processes

    monkeypatch.setattr(processes, "has_timeout_binary", lambda: False)
    task = flow.run("sleep 30", max_run_time_hours=0.5 / 3600)
    assert task.wait(timeout=30) is TaskStatus.FAILED
    assert task.message == "stopped: exceeded max_run_time_hours=0.000138889 (0.5 s)"
    assert "exceeded max_run_time_hours" in task.logs()


@pytest.mark.parametrize(
    ("command", "code", "output"),
    [
        ("exec sh -c 'echo replaced; exit 4'", 4, "replaced"),
        ("trap 'echo own trap' EXIT; exit 2", 2, "own trap"),
        ("echo before; exit 6; echo after", 6, "before"),
        ("echo (", 2, "Syntax error"),
    ],
)
def test_exit_codes_survive_exec_exit_and_own_traps(
    flow: Flow, command: str, code: int, output: str
) -> None:
    task = flow.run(command)
    assert task.wait() is TaskStatus.FAILED
    assert task.exit_code == code and output in task.logs()
    with Flow() as other:  # another process reads the code from disk, not from its child
        assert other.get_task(task.task_id).exit_code == code


def test_env_values_reach_the_task_literally(flow: Flow, tmp_path: Path) -> None:
    out = tmp_path / "values.json"
    tricky = {
        "SPACES": "a b  c",
        "QUOTES": 'it\'s "quoted"',
        "DOLLAR": "$HOME `id`",
        "LINES": "one\ntwo",
        "EMPTY": "",
    }
    code = f"import json,os,sys; json.dump([{{k: os.environ[k] for k in {sorted(tricky)!r}}}, sys.argv[1:]], open({str(out)!r}, 'w'))"
    task = flow.run(f'{PY} -c "{code}" "$1" "$2"', env=tricky)
    assert task.wait() is TaskStatus.COMPLETED, task.logs()
    values, positional = json.loads(out.read_text())
    assert values == tricky
    assert positional == ["", ""]  # the wrapper's own arguments do not leak into the command
