"""``flow slurm-cluster`` starts a real one-node cluster a user can submit to, and stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from flow_helpers import pid_alive


def _daemons_of(folder: Path) -> dict[str, int]:
    """The daemons whose command line names ``folder``, by name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = Path(argv[0].decode()).name
        if name in ("munged", "slurmctld", "slurmd") and any(
            str(folder).encode() in a for a in argv
        ):
            found[name] = int(entry.name)
    return found


def test_slurm_cluster_command_runs_a_cluster_until_terminated(
    slurm: object, tmp_path: Path
) -> None:
    # `slurm` only makes this skip (or fail in CI) where the session cluster cannot start either
    process = subprocess.Popen(
        [sys.executable, "-m", "flow_backend.cli", "slurm-cluster", "--dir", str(tmp_path / "c")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        conf = next(
            ln.split("=", 1)[1].strip() for ln in lines if ln.startswith("export SLURM_CONF")
        )
        env = {**os.environ, "SLURM_CONF": conf}
        sinfo = subprocess.run(
            ["sinfo", "--noheader", "--format=%P %T"], env=env, capture_output=True, text=True
        )
        assert sinfo.stdout.split() == ["debug*", "idle"]
        job = subprocess.run(
            ["sbatch", "--parsable", "--wrap=true", f"--output={tmp_path}/out"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert job.stdout.strip().isdigit(), job.stderr
        daemons = _daemons_of(tmp_path / "c")
        assert sorted(daemons) == ["munged", "slurmctld", "slurmd"]
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        assert "SLURM cluster stopped." in out
        assert not [name for name, pid in daemons.items() if pid_alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _daemons_of(tmp_path / "c").values():  # a failed test leaves no daemon behind
            os.kill(pid, signal.SIGKILL)


def test_slurm_cluster_command_without_slurm_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "flow_backend.cli", "slurm-cluster", "--dir", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "slurmctld" in result.stderr and "apt-get install -y slurm-wlm munge" in result.stderr
    assert "Traceback" not in result.stderr
