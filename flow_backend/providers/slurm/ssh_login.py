"""A SLURM login node over SSH (``slurm_login: user@host``), through :mod:`flow_backend.remote`.

Each SLURM command is one SSH command whose script arrives on stdin: the environment (secret
values included) is exported there and ``sbatch``'s batch script follows as a here-document, so no
value is in a command line on either machine. Files are written and read in one round trip each;
the code is uploaded once per content version (:func:`flow_backend.remote.upload_code`).
"""

from __future__ import annotations

import base64
import shlex
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from flow_backend.providers.local.logs import follow_chunks
from flow_backend.providers.slurm.login import CommandResult, missing_tool
from flow_backend.remote import (
    connect,
    download,
    exec_command,
    interactive_shell,
    parse_destination,
    remote_home,
    run_shell,
    upload_code,
)

__all__ = ["SSHLogin"]

_MISSING = 127  # bash: command not found


class SSHLogin:
    """SLURM's commands and the task folders on a login node reached over SSH.

    Args:
        destination: ``user@host[:port]``.
        slurm_conf: ``SLURM_CONF`` on the login node (``None``: its usual config).
        key_path: Private key for SSH (``None``: agent and default keys).
        home: FLOW_HOME here (its ``known_hosts`` pins the login node's key).
    """

    shares_files = False

    def __init__(
        self, destination: str, slurm_conf: Path | None, key_path: Path | None, home: Path
    ) -> None:
        self._destination = parse_destination(destination, field="slurm_login")
        self.where = str(self._destination)
        self._slurm_conf = slurm_conf
        self._key_path = key_path
        self._conn = connect(self._destination, key_path, known_hosts=home / "known_hosts")
        self._home: str | None = None
        #: How many times each SLURM command ran (``sbatch``, ``squeue``, ``scancel``).
        self.calls: Counter[str] = Counter()

    def _remote_home(self) -> str:
        if self._home is None:
            self._home = remote_home(self._conn)
        return self._home

    def default_root(self) -> str:
        """``~/.flow-slurm`` on the login node."""
        return f"{self._remote_home()}/.flow-slurm"

    def default_workdir(self, working_dir: str | None) -> str:
        """``working_dir`` (relative: to the remote home), else the remote home."""
        if working_dir and working_dir.startswith("/"):
            return working_dir
        return f"{self._remote_home()}/{working_dir or '.'}".rstrip("/.") or "/"

    def slurm(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str = ""
    ) -> CommandResult:
        """Run a SLURM command on the login node; ``env`` and ``stdin`` travel in the script.

        Raises:
            ProviderError: The command is not installed there, or SSH failed.
        """
        exports = dict(env or {})
        if self._slurm_conf is not None:
            exports["SLURM_CONF"] = str(self._slurm_conf)
        lines = [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
        lines.append(f"command -v {shlex.quote(argv[0])} >/dev/null || exit {_MISSING}")
        marker = "FLOW_SLURM_STDIN_END"
        lines.append(f"{shlex.join(argv)} <<'{marker}'\n{stdin}{marker}")
        self.calls[argv[0]] += 1
        result = exec_command(self._conn, "bash -s", stdin="\n".join(lines).encode() + b"\n")
        if result.exit_code == _MISSING and not result.stdout:
            raise missing_tool(argv[0], self.where)
        return CommandResult(result.exit_code, result.text, result.error_text)

    def write_files(self, files: Mapping[str, tuple[str, int]]) -> None:
        """Write ``{path: (text, mode)}`` in one round trip (folders private: mode 0700)."""
        lines = ["set -e", "umask 077"]
        for path, (text, mode) in files.items():
            quoted = shlex.quote(path)
            data = base64.b64encode(text.encode()).decode()
            lines += [
                f"mkdir -p {shlex.quote(str(Path(path).parent))}",
                f"printf %s {data} | base64 -d > {quoted}",
                f"chmod {mode:o} {quoted}",
            ]
        exec_command(self._conn, "bash -s", stdin="\n".join(lines).encode() + b"\n")

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """The text of each file in one round trip (``None`` for a missing one)."""
        if not paths:
            return {}
        script = "".join(
            f"if [ -f {shlex.quote(p)} ]; then printf '1 '; base64 -w0 {shlex.quote(p)}; "
            "else printf 0; fi; echo\n"
            for p in paths
        )
        lines = exec_command(self._conn, "bash -s", stdin=script.encode()).text.splitlines()
        texts: dict[str, str | None] = {}
        for path, line in zip(paths, lines + [""] * (len(paths) - len(lines)), strict=True):
            texts[path] = (
                base64.b64decode(line[2:]).decode(errors="replace")
                if line.startswith("1")
                else None
            )
        return texts

    def remove(self, folder: str) -> None:
        """Delete a folder on the login node and everything in it."""
        exec_command(self._conn, f"rm -rf {shlex.quote(folder)}")

    def put_code(self, root: Path, code_dir: str) -> str:
        """Upload ``root`` under ``code_dir`` once per content version; returns its folder."""
        return upload_code(self._conn, root, code_dir).path

    def tail(self, path: str, lines: int | None) -> str:
        """A log's text (its last ``lines`` lines when given); ``""`` before it exists."""
        quoted = shlex.quote(path)
        reader = f"cat {quoted}" if lines is None else f"tail -n {max(0, int(lines))} {quoted}"
        return exec_command(self._conn, f"[ -f {quoted} ] && {reader} || true").text

    def follow(self, path: str, has_ended: Callable[[], bool], poll: float) -> Iterator[str]:
        """A log's lines as they are written, until ``has_ended()`` and all was read."""
        quoted = shlex.quote(path)

        def read_from(offset: int) -> bytes:
            command = f"[ -f {quoted} ] && tail -c +{offset + 1} {quoted} || true"
            return exec_command(self._conn, command).stdout

        return follow_chunks(read_from, has_ended, poll)

    def download(self, path: str, local_path: Path) -> None:
        """Copy a file or folder from the login node.

        Raises:
            ResourceNotFoundError: ``path`` does not exist (yet).
        """
        download(self._conn, path, local_path)

    def shell(self, command: str | None, cwd: str) -> str:
        """Run ``command`` in ``cwd`` on the login node; no command: log in there."""
        if command is None:
            interactive_shell(self._destination, self._key_path, cwd=cwd)
            return ""
        return run_shell(self._conn, command, cwd=cwd)

    def close(self) -> None:
        """Close the SSH connection (jobs keep running)."""
        self._conn.close()
