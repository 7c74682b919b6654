"""The remote job environment: a sweep on an instance whose Python has nothing installed.

The launcher plans a venv with the launching side's versions of what the job runner needs, ships this
project's code with the upload, and the first task on the instance builds the venv (with uv, here);
every later task finds it ready.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
from launcher_helpers import job_runs
from remote_helpers import EXPERIMENT, copy_project, sweep_command
from sshd import SSHServer

from flow_backend.testing import FakeMithril
from flow_backend.testing.pytest_plugin import fake_mithril
from hydra_plugins.hydraflow_plugins._env_boot import COMPLETE_MARK
from hydra_plugins.hydraflow_plugins._env_boot import main as boot_main
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._remote_env import (
    env_failure,
    env_key,
    plan_remote_env,
    runner_requirements,
)

__all__ = ["fake_mithril"]


@pytest.fixture
def bare_python(tmp_path: Path) -> Path:
    """A venv with nothing installed (not even pip): the instance's own Python."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import hydra"], capture_output=True)
    assert check.returncode != 0  # really bare
    return python


def _host_path() -> str:
    """PATH of the instance: the system's folders plus where uv is (the host 'has uv')."""
    uv = shutil.which("uv")
    if uv is None:
        message = "uv is not installed (pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return os.pathsep.join([str(Path(uv).parent), "/usr/local/bin", "/usr/bin", "/bin"])


def _run(
    project: Path, sweep_dir: str, *overrides: str, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    command = [
        part
        for part in sweep_command("mithril")
        if not part.startswith(("hydra.launcher.python=", "hydra.sweep.dir="))
    ] + [f"hydra.sweep.dir={sweep_dir}", *overrides]
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def _task_logs(project: Path) -> list[str]:
    return [
        (project / "multirun" / "sweep" / str(num) / "flow-task.log").read_text()
        for num in range(4)
    ]


def test_sweep_on_a_bare_python_prepares_the_environment_once(
    fake_mithril: FakeMithril, sshd: SSHServer, tmp_path: Path, bare_python: Path
) -> None:
    project = copy_project(tmp_path)
    env_dir = tmp_path / "envs"
    overrides = [
        "hydra.launcher.env_setup=true",
        f"hydra.launcher.python={bare_python}",
        f"hydra.launcher.env_dir={env_dir}",
        f"+hydra.launcher.env.PATH={_host_path()}",
        f"hydra.launcher.setup=['echo $VIRTUAL_ENV >> {env_dir}/setup.log']",
        # one task per job: each job's log then shows whether its task built the environment
        "hydra.launcher.reuse_workers=false",
    ]
    started = time.monotonic()
    proc = _run(project, "multirun/sweep", *overrides, "lr=0.1,0.01,0.001,0.0001")
    print(f"4-job sweep with the environment built: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert sorted(r.data.params["lr"] for r in children) == ["0.0001", "0.001", "0.01", "0.1"]
    assert all(r.info.status == "FINISHED" for r in children)

    # one venv, built by one task; the other three found it (after waiting on its lock)
    venvs = [p for p in env_dir.iterdir() if p.is_dir()]
    assert len(venvs) == 1 and (venvs[0] / COMPLETE_MARK).is_file()
    logs = _task_logs(project)
    assert sum("hydraflow: prepared the job environment" in log for log in logs) == 1
    assert sum("preparing the job environment" in log for log in logs) == 1
    built = next(line for log in logs for line in log.splitlines() if " prepared the job" in line)
    print(f"the build itself: {built.rsplit(' in ', 1)[1]}")
    # the user's setup command ran once, in the venv
    assert (env_dir / "setup.log").read_text() == f"{venvs[0]}\n"
    # the jobs ran on the venv's Python, built from the bare one, with the launching side's mlflow
    from importlib.metadata import version

    pinned = (venvs[0] / COMPLETE_MARK).read_text()
    assert f"mlflow-skinny=={version('mlflow-skinny')}" in pinned
    assert str(bare_python) in pinned


# -- in memory: the requirement list, the reuse key, bad input -------------------------------------


def _versions(name: str) -> str:
    known = {"hydra-core": "1.3.2", "omegaconf": "2.3.0", "cloudpickle": "3.0.0", "mlflow": "3.1.0"}
    if name in known:
        return known[name]
    if name in ("sqlalchemy", "alembic", "hydra-joblib-launcher"):
        return "1.0"
    raise PackageNotFoundError(name)


def test_requirements_pin_the_launching_sides_versions_and_its_hydra_plugins() -> None:
    pins = runner_requirements(_versions, lambda: ["hydra-joblib-launcher"])
    assert pins == [
        "alembic==1.0",
        "cloudpickle==3.0.0",
        "hydra-core==1.3.2",
        "hydra-joblib-launcher==1.0",
        "mlflow==3.1.0",  # no mlflow-skinny here: the full package
        "omegaconf==2.3.0",
        "sqlalchemy==1.0",
    ]

    def no_cloudpickle(name: str) -> str:
        if name == "cloudpickle":
            raise PackageNotFoundError(name)
        return _versions(name)

    with pytest.raises(FlowLauncherError, match=r"hydra\.launcher\.env_setup: cloudpickle"):
        runner_requirements(no_cloudpickle, list)


def test_the_reuse_key_changes_with_the_needs_only() -> None:
    pins = ["hydra-core==1.3.2"]
    key = env_key("python3", pins, ["pip install numpy"], "torch\n")
    assert key == env_key("python3", list(pins), ["pip install numpy"], "torch\n")
    others = {
        env_key("python3.12", pins, ["pip install numpy"], "torch\n"),
        env_key("python3", ["hydra-core==1.3.3"], ["pip install numpy"], "torch\n"),
        env_key("python3", pins, [], "torch\n"),
        env_key("python3", pins, ["pip install numpy"], ""),
    }
    assert key not in others and len(others) == 4


def _options(**fields: object) -> LauncherOptions:
    return LauncherOptions.from_params({"provider": "ssh", **fields})


def test_env_setup_is_on_unless_a_ready_python_is_named(tmp_path: Path) -> None:
    stage = tmp_path / ".hydraflow" / "s1"
    planned = plan_remote_env(_options(), tmp_path, stage)
    assert planned is not None and planned.base_python == "python3"
    # the runner's own code travels with the upload
    assert (tmp_path / planned.code / "hydra_plugins/hydraflow_plugins/_job_runner.py").is_file()
    assert planned.wrap(["-m", "x"])[:2] == [
        "python3",
        f"{planned.code}/hydra_plugins/hydraflow_plugins/_env_boot.py",
    ]
    assert plan_remote_env(_options(python="/opt/py/bin/python"), tmp_path, stage) is None
    assert plan_remote_env(_options(env_setup=False), tmp_path, stage) is None
    assert plan_remote_env(_options(image="pytorch/pytorch"), tmp_path, stage) is None
    built = plan_remote_env(_options(python="/usr/bin/python3", env_setup=True), tmp_path, stage)
    assert built is not None and built.base_python == "/usr/bin/python3"


def test_setup_takes_one_command_or_a_list(tmp_path: Path) -> None:
    one = plan_remote_env(_options(setup="pip install numpy"), tmp_path, tmp_path / "stage")
    assert one is not None and one.setup == ["pip install numpy"]
    with pytest.raises(FlowLauncherError, match=r"^hydra\.launcher\.setup=\[3\] is invalid"):
        plan_remote_env(_options(setup=[3]), tmp_path, tmp_path / "stage")
    with pytest.raises(FlowLauncherError, match=r"^hydra\.launcher\.env_dir='' is invalid"):
        plan_remote_env(_options(env_dir=""), tmp_path, tmp_path / "stage")


def test_a_missing_requirements_file_is_one_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(FlowLauncherError) as error:
        plan_remote_env(_options(requirements="reqs.txt"), tmp_path, tmp_path / "stage")
    assert str(error.value).startswith("hydra.launcher.requirements='reqs.txt' is invalid")
    (tmp_path / "reqs.txt").write_text("numpy\n")
    planned = plan_remote_env(_options(requirements="reqs.txt"), tmp_path, tmp_path / "stage")
    assert planned is not None and planned.requirements_file == "reqs.txt"


@pytest.mark.parametrize("host_has_uv", [True, False], ids=["uv", "venv+pip"])
def test_a_failing_setup_command_is_one_message_and_leaves_no_venv(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    host_has_uv: bool,
) -> None:
    if host_has_uv:
        _host_path()  # skips (fails on CI) without uv
    else:
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
    plan = {
        "key": "k1",
        "base_python": sys.executable,
        "requirements": [],
        "setup": ["echo first >> ran.txt", "exit 7"],
        "requirements_file": None,
        "env_dir": str(tmp_path / "envs"),
        "code": "code",
    }
    monkeypatch.chdir(tmp_path)  # the uploaded code folder
    with pytest.raises(SystemExit) as stopped:
        boot_main([json.dumps(plan), "--", "-c", "pass"])
    assert stopped.value.code == 3
    err = capfd.readouterr().err
    assert "the hydra.launcher.setup command 'exit 7' failed with exit code 7" in err
    assert "fix or remove it in hydra.launcher.setup" in err
    # the launcher's failure message quotes that line instead of guessing at a crash
    why = env_failure("some output\n" + err)
    assert why is not None and why.startswith("could not prepare the job environment (the hydra")
    assert env_failure("Traceback ...\nKilled\n") is None
    assert (tmp_path / "ran.txt").read_text() == "first\n"  # the commands before it ran
    assert not (tmp_path / "envs" / "k1").exists()  # the next task tries again from scratch
