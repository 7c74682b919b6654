"""``FlowLauncher.session()``: the streaming contract a sweeper builds on, end to end (local tasks)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.core.utils import JobStatus
from hydra.types import HydraContext
from launcher_helpers import processes_mentioning
from omegaconf import DictConfig

from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher


def objective(cfg: DictConfig) -> float:
    """Twice ``x``; ``x=99`` sleeps until cancelled, ``x=98`` ignores the cancellation too;
    ``x=0`` returns the id of the process it ran in."""
    if cfg.x in (98, 99):  # (a remote job is told where the test looks: MARKS)
        Path(os.environ.get("MARKS", "."), f"started-{cfg.x}").write_text(str(os.getpid()))
        for _ in range(120):
            try:
                time.sleep(1)
            except Exception:  # a job that swallows every exception, the interrupt included
                if cfg.x == 99:
                    raise
    if cfg.x == 0:
        return float(os.getpid())
    return 2.0 * cfg.x


@pytest.fixture(params=["workers", "per-task"])
def launcher(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FlowLauncher]:
    """A set-up flow launcher (max_parallel=2), as Hydra makes it for a multirun.

    ``ssh-workers`` (asked for by name): warm workers on the ssh provider (loopback sshd).
    """
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra

    reuse = "false" if request.param == "per-task" else "true"
    overrides = [
        "hydra/launcher=flow",
        "hydra.launcher.max_parallel=2",
        f"hydra.launcher.reuse_workers={reuse}",
        "hydra/job_logging=disabled",
    ]
    if request.param == "ssh-workers":
        sshd = request.getfixturevalue("sshd")
        monkeypatch.setenv("FLOW_SSH_HOSTS", sshd.destination)
        monkeypatch.setenv("FLOW_SSH_KEY_PATH", str(sshd.key_path))
        monkeypatch.setenv("FLOW_SSH_REMOTE_DIR", str(tmp_path / "remote"))
        overrides += [
            "hydra.launcher.provider=ssh",
            f"hydra.launcher.python={sys.executable}",
            "hydra.launcher.poll_interval=0.2",
            f"+hydra.launcher.env.MARKS={tmp_path}",
            # the job imports this test module as an installed package would be imported
            f"+hydra.launcher.env.PYTHONPATH={Path(__file__).parent}",
        ]
    saved = Singleton.get_state()  # the version base and HydraConfig set here must not leak
    try:
        with initialize(version_base="1.3", config_path=None, job_name="session"):
            cfg = compose(overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            config_loader = GlobalHydra.instance().config_loader()
            context = HydraContext(config_loader=config_loader, callbacks=Callbacks(cfg))
            made = Plugins.instance().instantiate_launcher(
                hydra_context=context, task_function=objective, config=cfg
            )
            assert type(made).__name__ == "FlowLauncher"  # (discovery imports the module anew)
            yield made  # type: ignore[misc]
    finally:
        Singleton.set_state(saved)
    assert not processes_mentioning(str(tmp_path)), "a task outlived its session"


def test_outcomes_stream_as_jobs_end_and_cancel_stops_a_running_job(
    launcher: FlowLauncher, tmp_path: Path
) -> None:
    with launcher.session() as session:
        assert session.slots == 2
        assert session.outcomes(timeout=0.1) == []  # nothing submitted: returns at once
        session.submit(0, ["+x=99"])
        session.submit(1, ["+x=1"])
        ((num, ret),) = session.outcomes(timeout=60)
        assert (num, ret.status, ret.return_value) == (1, JobStatus.COMPLETED, 2.0)
        assert ret.hydra_cfg.hydra.job.num == 1  # type: ignore[union-attr]
        assert session.active == {0}
        session.submit(2, ["+x=3"])  # the free slot takes it at once
        ((num, ret),) = session.outcomes(timeout=60)
        assert (num, ret.return_value) == (2, 6.0)
        deadline = time.monotonic() + 60
        while not (tmp_path / "started-99").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.outcomes(timeout=0.2) == []  # job 0 still runs: nothing to report
        session.cancel(0)
        ((num, ret),) = session.outcomes(timeout=10)
        assert num == 0 and ret.status == JobStatus.FAILED
        assert "cancelled" in str(ret._return_value)
        assert session.active == set()


def test_leaving_a_session_cancels_what_is_still_active(
    launcher: FlowLauncher, tmp_path: Path
) -> None:
    with launcher.session() as session:
        session.submit(0, ["+x=99"])
        session.submit(1, ["+x=99"])
        session.submit(2, ["+x=1"])  # queued behind two sleepers
        deadline = time.monotonic() + 60
        while not (tmp_path / "started-99").exists() and time.monotonic() < deadline:
            session.outcomes(timeout=0.1)
        assert session.active == {0, 1, 2}
    # the fixture checks that no task process is left


def test_ctrl_c_with_a_busy_and_an_idle_worker_cancels_and_leaves_no_process(
    launcher: FlowLauncher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited, launcher.session() as session:
        session.submit(0, ["+x=99"])
        session.submit(1, ["+x=1"])
        ((num, _),) = session.outcomes(timeout=60)  # job 1 ended: its worker (or task) is idle
        assert num == 1
        deadline = time.monotonic() + 60
        while not (tmp_path / "started-99").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt  # as Ctrl-C does
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert "Interrupted: cancelled 1 live task(s)" in err and "(job #0)" in err
    # the fixture checks that no task process is left, the idle worker's included


def _cancel_running_then_run_another(launcher: FlowLauncher, tmp_path: Path, x: int) -> bool:
    """On one slot: start job ``+x=<x>``, cancel it once it runs, then run ``+x=0``; whether the
    second job ran in the same process as the cancelled one."""
    launcher.params["max_parallel"] = 1
    with launcher.session() as session:
        session.submit(0, [f"+x={x}"])
        started = tmp_path / f"started-{x}"
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            assert session.outcomes(timeout=0.05) == []  # (drives a remote worker's start)
        session.cancel(0)
        ((num, ret),) = session.outcomes(timeout=30)
        assert (num, ret.status) == (0, JobStatus.FAILED)
        assert f"Job #0 (+x={x}) cancelled" in str(ret._return_value)
        session.submit(1, ["+x=0"])
        ((num, ret),) = session.outcomes(timeout=60)
        assert (num, ret.status) == (1, JobStatus.COMPLETED)
    assert not list(tmp_path.glob("multirun/*/*/.flow/workers/*/wake"))  # no pipe left behind
    assert not list(tmp_path.glob("multirun/*/*/.flow/workers/ended"))
    assert (next(tmp_path.glob("multirun/*/*/0")) / "flow-task.log").is_file()  # output kept
    return bool(ret.return_value == float(started.read_text()))


def _workers_started(provider: str = "local") -> list[str]:
    from flow_backend import Flow

    with Flow(provider=provider) as flow:
        return sorted(task.name.rsplit("-", 1)[1] for task in flow.list_tasks())


@pytest.mark.parametrize("launcher", ["workers"], indirect=True)
def test_a_cancelled_job_stops_alone_and_its_worker_runs_the_next_job(
    launcher: FlowLauncher, tmp_path: Path
) -> None:
    assert _cancel_running_then_run_another(launcher, tmp_path, 99)  # same process
    assert _workers_started() == ["w0"]  # one worker task


@pytest.mark.parametrize("launcher", ["ssh-workers"], indirect=True)
def test_a_cancelled_job_stops_alone_inside_its_remote_worker(
    launcher: FlowLauncher, tmp_path: Path
) -> None:
    """Over SSH, the cancel reaches the job inside its warm worker, which runs the next job."""
    assert _cancel_running_then_run_another(launcher, tmp_path, 99)  # same process
    assert _workers_started("ssh") == ["w0"]  # one worker task on the host


@pytest.mark.parametrize("launcher", ["workers"], indirect=True)
def test_a_cancelled_job_that_ignores_the_interrupt_is_stopped_with_its_worker(
    launcher: FlowLauncher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra_plugins.hydraflow_plugins import _workers

    monkeypatch.setattr(_workers, "CANCEL_GRACE_SECONDS", 1.0)
    assert not _cancel_running_then_run_another(launcher, tmp_path, 98)  # another process
    assert _workers_started() == ["w0", "w1"]  # the first worker was replaced
