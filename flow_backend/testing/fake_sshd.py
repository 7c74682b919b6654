"""Each fake instance's own sshd: a real OpenSSH server with a host key of its own.

On the real cloud every instance is a machine with its own sshd and its own freshly generated host
key, and a later instance on a reused address presents a different key. The fake reproduces that
without a daemon per instance: its address (a :class:`~flow_backend.testing.fake_ssh_gate.Gate`)
hands every accepted connection to ``sshd -i`` (OpenSSH's inetd mode: one server process per
connection, speaking on the socket), started with the instance's own config: its own ed25519
host key (generated in-process when the instance is allocated), ``authorized_keys`` holding the
public keys of the bid's SSH keys (as the real cloud installs them), and a log in the instance's
folder. Starting ``sshd -i`` costs a few milliseconds per connection and nothing while idle.

What is real: the SSH protocol, the host key exchange, public-key authentication against the bid's
keys, the commands run by a real shell. What is modelled: every "instance" is this machine (the
same filesystem and users), and the login user is the one of the fake's ``ssh_destination``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["SSHD", "TEST_SSHD_OPTIONS", "InstanceSshd", "sshd_binary"]

SSHD = "/usr/sbin/sshd"


def sshd_binary() -> str | None:
    """The OpenSSH server binary, if this machine has one."""
    if os.access(SSHD, os.X_OK):
        return SSHD
    return shutil.which("sshd")


#: sshd_config lines of a test sshd on this machine (this fake's instances, ``tests/sshd.py``):
#: key logins only, by the user running the tests (root included), no PAM, no mode checks.
TEST_SSHD_OPTIONS: tuple[str, ...] = (
    "StrictModes no",
    "UsePAM no",
    "PermitRootLogin yes",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "MaxSessions 64",
    "Subsystem sftp internal-sftp",
    "LogLevel INFO",
    # bash sources ~/.bashrc for commands sshd runs unless SHLVL is already set; a root .bashrc
    # that runs `pyenv init` costs 0.3 s per command. Tests call tools by absolute path.
    "SetEnv SHLVL=1",
)


def _config(folder: Path) -> str:
    return "\n".join(
        [
            f"HostKey {folder / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PidFile none",
            *TEST_SSHD_OPTIONS,
            "",
        ]
    )


class InstanceSshd:
    """The sshd of one fake instance: its host key, authorized keys and live server processes.

    Args:
        folder: The instance's folder (config, host key, ``authorized_keys``, ``sshd.log``).
        public_keys: OpenSSH public key lines allowed to log in (the bid's SSH keys).
        binary: The ``sshd`` to run.
    """

    def __init__(self, folder: Path, public_keys: list[str], binary: str) -> None:
        self.folder = folder
        self.binary = binary
        #: The instance's script, when it runs in a mount namespace of its own: SSH sessions
        #: enter it (see :mod:`~flow_backend.testing.fake_volumes`).
        self.namespace_pid: int | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # sshd's privilege-separation folder
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        (folder / "authorized_keys").write_text("".join(f"{key.strip()}\n" for key in public_keys))
        (folder / "sshd_config").write_text(_config(folder))
        self.new_host_key()

    @property
    def public_key(self) -> str:
        """The host key's public half, ``ssh-ed25519 AAAA...``."""
        return (self.folder / "ssh_host_ed25519_key.pub").read_text().strip()

    def new_host_key(self) -> None:
        """Generate a host key (a fresh machine, or someone else answering at the address)."""
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        path = self.folder / "ssh_host_ed25519_key"
        descriptor = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(private)
        os.replace(path.with_suffix(".tmp"), path)
        (self.folder / "ssh_host_ed25519_key.pub").write_bytes(public + b" fake-instance\n")

    def serve(self, client: socket.socket) -> None:
        """Run ``sshd -i`` on an accepted connection (the socket is its stdin and stdout)."""
        command = [self.binary, "-i", "-e", "-f", str(self.folder / "sshd_config")]
        namespace = f"/proc/{self.namespace_pid}/ns/mnt" if self.namespace_pid else None
        if namespace and os.path.exists(namespace):
            command = ["nsenter", f"--mount={namespace}", "--", *command]
        with open(self.folder / "sshd.log", "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=client.fileno(),
                stdout=client.fileno(),
                stderr=log,
                start_new_session=True,
            )
        client.close()  # the server process holds the connection now
        with self._lock:
            self._processes = [p for p in self._processes if p.poll() is None]
            self._processes.append(process)

    def cut(self) -> None:
        """End every connection (the machine powered off, or sshd restarted)."""
        with self._lock:
            processes, self._processes = self._processes, []
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
