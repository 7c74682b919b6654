"""The pipelines' lock folder beside a store stays out of git and out of remote code uploads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from flow_backend.remote.code_upload import collect_files
from hydraflow.pipeline.cache import lock_dir_for, stage_lock


@pytest.mark.parametrize("relative", [True, False])
def test_lock_files_are_ignored_by_git_and_the_code_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")
    uri = "sqlite:///mlflow.db" if relative else f"sqlite:///{tmp_path / 'mlflow.db'}"
    lock_dir = lock_dir_for(uri)
    assert lock_dir == tmp_path / ".hydraflow-locks"  # beside the store MLflow opens
    with stage_lock(lock_dir, "abc123"):
        pass
    assert (lock_dir / "abc123.lock").is_file()
    assert collect_files(tmp_path) == ["train.py"]
    if shutil.which("git") is None:
        return
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout.split() == ["??", "train.py"]
