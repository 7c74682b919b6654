"""Commands and interactive shells on a host."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from fabric import Connection

from flow_backend.remote.connection import exec_command
from flow_backend.remote.destination import SSHDestination

__all__ = ["interactive_shell", "remote_home", "run_shell", "ssh_command_line"]


def run_shell(
    conn: Connection, command: str, *, cwd: str | None = None, timeout: float | None = 600.0
) -> str:
    """Run ``command`` with the remote login shell and return its stdout followed by its stderr.

    Args:
        conn: Connection to the host.
        command: Shell command line.
        cwd: Remote folder to run it in.
        timeout: Seconds without output before giving up.

    Returns:
        The command's output.
    """
    line = f"cd {shlex.quote(cwd)} && {command}" if cwd else command
    result = exec_command(conn, line, timeout=timeout)
    return result.text + result.error_text


def remote_home(conn: Connection) -> str:
    """The remote user's home folder, for building absolute remote paths."""
    home = exec_command(conn, 'printf %s "$HOME"').text.strip()
    return home or "/tmp"


def ssh_command_line(destination: SSHDestination, key_path: Path | str | None) -> str:
    """What a user types to log in: ``ssh -i KEY -p PORT user@host``."""
    parts = ["ssh"]
    if key_path is not None:
        parts += ["-i", str(Path(key_path).expanduser())]
    if destination.port != 22:
        parts += ["-p", str(destination.port)]
    parts.append(f"{destination.user}@{destination.host}")
    return shlex.join(parts)


def interactive_shell(
    destination: SSHDestination,
    key_path: Path | str | None,
    *,
    cwd: str | None = None,
) -> int:
    """Open an interactive login shell on the host, attached to this terminal.

    Uses the ``ssh`` client when installed (a real TTY, the user's own host-key checks); otherwise
    fabric's ``Connection.shell``.

    Args:
        destination: The host.
        key_path: Private key file.
        cwd: Remote folder to start in.

    Returns:
        The shell's exit code.
    """
    if shutil.which("ssh"):
        argv = shlex.split(ssh_command_line(destination, key_path))
        # Same host-key policy as connect(): no prompt; loopback keys are not recorded.
        if destination.is_loopback:
            options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
        else:
            options = ["StrictHostKeyChecking=accept-new"]
        for option in reversed(options):
            argv[1:1] = ["-o", option]
        if cwd:
            argv[1:1] = ["-t"]
            argv.append(f"cd {shlex.quote(cwd)} && exec $SHELL -l")
        return subprocess.call(argv)
    from flow_backend.remote.connection import connect

    result = connect(destination, key_path).shell()
    return int(getattr(result, "exited", 0) or 0)
