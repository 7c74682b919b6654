"""Where the SLURM commands run and the task folders live: the login node.

:class:`LocalLogin` is this machine. Every SLURM command goes through :meth:`LocalLogin.slurm`,
which counts the calls per command (the benchmark reads them) and turns a missing tool into one
clear error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flow_backend.errors import ProviderError
from flow_backend.providers.local import logs
from flow_backend.remote.code_upload import code_hash, collect_files

_COMPLETE_MARKER = ".flow-code-complete"

__all__ = ["CommandResult", "LocalLogin"]


@dataclass(frozen=True)
class CommandResult:
    """What a SLURM command returned."""

    exit_code: int
    stdout: str
    stderr: str


class LocalLogin:
    """SLURM's commands and the task folders on this machine.

    Args:
        slurm_conf: ``SLURM_CONF`` for the commands (``None``: the cluster's usual config).
    """

    where = "this machine"

    def __init__(self, slurm_conf: Path | None) -> None:
        self._slurm_conf = slurm_conf
        #: How many times each SLURM command ran (``sbatch``, ``squeue``, ``scancel``).
        self.calls: Counter[str] = Counter()

    def slurm(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str = ""
    ) -> CommandResult:
        """Run a SLURM command with extra environment ``env`` (passed in the environment, so
        values never show in ``ps``).

        Raises:
            ProviderError: The command is not installed here.
        """
        full_env = dict(os.environ)
        if self._slurm_conf is not None:
            full_env["SLURM_CONF"] = str(self._slurm_conf)
        full_env.update(env or {})
        self.calls[argv[0]] += 1
        try:
            result = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                env=full_env,
                check=False,
            )
        except FileNotFoundError:
            raise ProviderError(
                f"{argv[0]!r} is not installed on {self.where}: the slurm provider runs SLURM's "
                "own commands (sbatch, squeue, scancel)",
                field="provider",
                value="slurm",
                hint="Run flow on a SLURM login node (or install slurm-client), or pick another "
                "provider",
            ) from None
        return CommandResult(result.returncode, result.stdout, result.stderr)

    def write_files(self, files: Mapping[str, tuple[str, int]]) -> None:
        """Write ``{path: (text, mode)}``, creating folders (private: mode 0700)."""
        for path, (text, mode) in files.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """The text of each file (``None`` for a missing one)."""
        texts: dict[str, str | None] = {}
        for path in paths:
            try:
                texts[path] = Path(path).read_text(errors="replace")
            except OSError:
                texts[path] = None
        return texts

    def put_code(self, root: Path, code_dir: str) -> str:
        """A snapshot of ``root`` (ignore files honoured) under ``code_dir``, once per content
        version, so queued jobs run the code as it was at submission; returns its folder."""
        files = collect_files(root)
        target = Path(code_dir) / code_hash(root, files)
        if (target / _COMPLETE_MARKER).exists():
            return str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial.", dir=target.parent))
        for rel in files:
            source, copy = root / rel, partial / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                copy.symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, copy)
        (partial / _COMPLETE_MARKER).touch()
        try:
            partial.rename(target)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
        return str(target)

    def tail(self, path: str, lines: int | None) -> str:
        """A log's text (its last ``lines`` lines when given); ``""`` before it exists."""
        return logs.read_tail(Path(path), lines)

    def follow(self, path: str, has_ended: Callable[[], bool], poll: float) -> Iterator[str]:
        """A log's lines as they are written, until ``has_ended()`` and all was read."""
        return logs.follow(Path(path), has_ended, poll_seconds=poll)

    def close(self) -> None:
        """Nothing to release locally."""
        return None
