"""Ctrl-C or SIGTERM in the middle of a sweep cancels every live task and leaves no process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from launcher_helpers import APPS, interrupt, processes_mentioning, wait_for


@pytest.mark.parametrize(
    "workers", [[], ["hydra.launcher.reuse_workers=false"]], ids=["workers", "per-task"]
)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_cancels_live_tasks_and_leaves_no_process(
    tmp_path: Path, sig: signal.Signals, workers: list[str]
) -> None:
    sweep = subprocess.Popen(
        [
            sys.executable,
            str(APPS / "behaviour_app.py"),
            "-m",
            "hydra/launcher=flow",
            "hydra.launcher.max_parallel=2",
            "mode=sleep",
            "seconds=120",
            "value=1,2,3",
            *workers,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    # Both live jobs are inside their task function: they are really running.
    _out, err = interrupt(
        sweep, lambda: len(list(tmp_path.glob("started-*"))) >= 2, "2 running jobs", sig
    )
    assert sweep.returncode != 0
    assert "cancelled 2 live task(s)" in err
    assert "(job #0)" in err and "(job #1)" in err, err
    assert "Traceback" not in err
    assert "job #2" not in err.split("cancelled 2 live task(s)")[1]  # never started
    wait_for(lambda: not processes_mentioning(str(tmp_path)), 15, "no task process left")
    assert not list(tmp_path.glob("multirun/*/*/.flow/*/result.pkl"))
    # the two stopped jobs keep their output in their own folders, as a finished job does
    kept = sorted(tmp_path.glob("multirun/*/*/*/flow-task.log"))
    assert [log.parent.name for log in kept] == ["0", "1"], err
    assert all("sleeps 120 s" in log.read_text() for log in kept), [k.read_text() for k in kept]
