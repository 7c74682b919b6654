"""Where the SLURM commands run and the task folders live: the login node.

:class:`Login` is what the provider needs of one; :class:`LocalLogin` is this machine, and
``SSHLogin`` (:mod:`flow_backend.providers.slurm.ssh_login`) a login node over SSH. Every SLURM
command goes through ``slurm()``, which counts the calls per command (the benchmark reads them) and
turns a missing tool into one clear error.
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
from typing import Protocol

from flow_backend.errors import ProviderError, ResourceNotFoundError
from flow_backend.providers.local import logs
from flow_backend.remote.code_upload import code_hash, collect_files

_COMPLETE_MARKER = ".flow-code-complete"

__all__ = ["CommandResult", "LocalLogin", "Login", "missing_tool"]


@dataclass(frozen=True)
class CommandResult:
    """What a SLURM command returned."""

    exit_code: int
    stdout: str
    stderr: str


def missing_tool(tool: str, where: str) -> ProviderError:
    """The one error for a SLURM command that is not installed where it must run."""
    return ProviderError(
        f"{tool!r} is not installed on {where}: the slurm provider runs SLURM's own commands "
        "(sbatch, squeue, scancel, scontrol)",
        field="provider",
        value="slurm",
        hint="Run flow on a SLURM login node (or set slurm_login), or pick another provider",
    )


class Login(Protocol):
    """A login node: SLURM's commands, the task folders, the code."""

    #: Where it is, for messages (``this machine``, ``user@host:port``).
    where: str
    #: Whether its files are this machine's (same paths).
    shares_files: bool
    #: How many times each SLURM command ran.
    calls: Counter[str]

    def slurm(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str = ""
    ) -> CommandResult: ...
    def default_root(self) -> str: ...
    def default_workdir(self, working_dir: str | None) -> str: ...
    def write_files(self, files: Mapping[str, tuple[str, int]]) -> None: ...
    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]: ...
    def remove(self, folder: str) -> None: ...
    def put_code(self, root: Path, code_dir: str) -> str: ...
    def tail(self, path: str, lines: int | None) -> str: ...
    def follow(self, path: str, has_ended: Callable[[], bool], poll: float) -> Iterator[str]: ...
    def download(self, path: str, local_path: Path) -> None: ...
    def shell(self, command: str | None, cwd: str) -> str: ...
    def close(self) -> None: ...


class LocalLogin:
    """SLURM's commands and the task folders on this machine.

    Args:
        slurm_conf: ``SLURM_CONF`` for the commands (``None``: the cluster's usual config).
        home: FLOW_HOME (the default task folders go under it).
    """

    where = "this machine"
    shares_files = True

    def __init__(self, slurm_conf: Path | None, home: Path) -> None:
        self._slurm_conf = slurm_conf
        self._home = home
        #: How many times each SLURM command ran (``sbatch``, ``squeue``, ``scancel``).
        self.calls: Counter[str] = Counter()

    def default_root(self) -> str:
        """``FLOW_HOME/slurm``."""
        return str((self._home / "slurm").resolve())

    def default_workdir(self, working_dir: str | None) -> str:
        """Where a task without uploaded code runs: ``working_dir`` (from here), else here."""
        return str(Path(working_dir or os.getcwd()).expanduser().resolve())

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
            raise missing_tool(argv[0], self.where) from None
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

    def remove(self, folder: str) -> None:
        """Delete a folder and everything in it (gone already: nothing to do)."""
        shutil.rmtree(folder, ignore_errors=True)

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

    def download(self, path: str, local_path: Path) -> None:
        """Copy a file or folder (no-op when it is ``local_path`` itself).

        Raises:
            ResourceNotFoundError: ``path`` does not exist (yet).
        """
        source, target = Path(path), Path(local_path)
        if not source.exists():
            raise ResourceNotFoundError(
                f"{path!r} does not exist (yet)",
                field="remote_path",
                value=path,
                hint="Check the path relative to the task's working folder",
            )
        if source.resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)

    def shell(self, command: str | None, cwd: str) -> str:
        """Run ``command`` in ``cwd`` and return its output; no command: an interactive shell."""
        if command is None:
            subprocess.call([os.environ.get("SHELL", "/bin/sh")], cwd=cwd)
            return ""
        result = subprocess.run(
            command, shell=True, cwd=cwd, capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def close(self) -> None:
        """Nothing to release locally."""
        return None
