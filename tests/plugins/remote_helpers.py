"""Helpers for sweeps on remote providers: a copy of the test project and a sweep subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from launcher_helpers import APPS

PROJECT = APPS / "remote_project"
EXPERIMENT = "remote_app"


def copy_project(tmp_path: Path) -> Path:
    """The launch dir: a copy of the test project (its own .gitignore), not the remote dir."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    return project


def sweep_command(provider: str, *overrides: str) -> list[str]:
    """The command of a sweep of the project's app on ``provider`` (run it in the project)."""
    return [
        sys.executable,
        "remote_app.py",
        "-m",
        "hydra/launcher=flow",
        "hydra/callbacks=mlflow",
        f"hydra.launcher.provider={provider}",
        # a ready interpreter (no job environment is made): the loopback "remote" host runs this
        # venv's python; test_remote_env covers the environment made on a bare one
        f"hydra.launcher.python={sys.executable}",
        "hydra.launcher.poll_interval=0.2",
        "hydra.sweep.dir=multirun/sweep",
        # Mithril offers GPU types only and has no default type (each costs dollars an hour)
        *(["hydra.launcher.instance=a100"] if provider == "mithril" else []),
        *overrides,
    ]


def run_sweep(
    project: Path, provider: str, *overrides: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run a sweep to its end; returns the finished process."""
    return subprocess.run(
        sweep_command(provider, *overrides),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]
