"""A real OpenSSH server on a loopback port, for tests that exercise SSH for real.

Use it from any test (the fixture is registered in ``tests/conftest.py``)::

    def test_something(sshd):              # sshd: tests.sshd.SSHServer, one per test session
        sshd.destination                   # "root@127.0.0.1:40123"  (user@host:port)
        sshd.key_path                      # private key the server authorizes
        sshd.alias_destination             # same server as "root@localhost:40123" (a 2nd "host")

The server is ``/usr/sbin/sshd -D -e -f <tmp sshd_config>`` with a fresh host key and client key
(``ssh-keygen``), ``AuthorizedKeysFile``/``PidFile`` in a temporary folder, ``StrictModes no``,
``UsePAM no``, ``PermitRootLogin yes`` (tests run as root). It logs to ``<workdir>/sshd.log``. When sshd
cannot start, tests that use it are skipped — or fail with the reason when ``CI=true``.

Processes that tests start detached on the server outlive it: tests must stop what they start.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flow_backend.testing.fake_sshd import TEST_SSHD_OPTIONS

SSHD = "/usr/sbin/sshd"
_START_ATTEMPTS = 3
_READY_SECONDS = 15.0


@dataclass(frozen=True)
class SSHServer:
    """A running loopback sshd.

    Attributes:
        host: ``127.0.0.1``.
        port: Its TCP port.
        user: The login name (the user running the tests).
        key_path: Private key the server accepts.
        workdir: Folder with its config, keys and log.
    """

    host: str
    port: int
    user: str
    key_path: Path
    workdir: Path

    @property
    def destination(self) -> str:
        """``user@127.0.0.1:port``."""
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def alias_destination(self) -> str:
        """The same server as ``user@localhost:port``: a second "host" for placement tests."""
        return f"{self.user}@localhost:{self.port}"

    @property
    def log_text(self) -> str:
        """What sshd logged so far (for failure messages)."""
        log = self.workdir / "sshd.log"
        return log.read_text(errors="replace") if log.exists() else ""


class SSHDUnavailable(RuntimeError):
    """sshd or ssh-keygen is missing or the server did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flow-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _write_config(workdir: Path, port: int) -> Path:
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {workdir / 'host_key'}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "MaxStartups 64:30:128",
                *TEST_SSHD_OPTIONS,  # shared with the fake Mithril's instances
                "",
            ]
        )
    )
    return config


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def start_sshd(workdir: Path) -> tuple[SSHServer, subprocess.Popen[bytes]]:
    """Start sshd on a free loopback port; returns the server and its process.

    Raises:
        SSHDUnavailable: With the reason (missing binaries, bad config, did not come up).
    """
    missing = [tool for tool in (SSHD, "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        raise SSHDUnavailable(
            f"{' and '.join(missing)} not found; install openssh-server and openssh-client "
            "(apt-get install -y openssh-server openssh-client)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir
    _keygen(workdir / "host_key")
    _keygen(workdir / "client_key")
    shutil.copy(workdir / "client_key.pub", workdir / "authorized_keys")
    reason = ""
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        config = _write_config(workdir, port)
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SSHDUnavailable(f"sshd rejected its config: {check.stderr.strip()}")
        log = (workdir / "sshd.log").open("ab")
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if _wait_ready(port, process):
            server = SSHServer(
                host="127.0.0.1",
                port=port,
                user=getpass.getuser(),
                key_path=workdir / "client_key",
                workdir=workdir,
            )
            return server, process
        stop_sshd(process)
        reason = (workdir / "sshd.log").read_text(errors="replace")[-2000:]
    raise SSHDUnavailable(f"sshd did not accept connections; its log:\n{reason}")


def stop_sshd(process: subprocess.Popen[bytes]) -> None:
    """Stop sshd and its per-connection children (they share its process group)."""
    if process.poll() is None:
        with_group = True
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            with_group = False
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if with_group:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """One real sshd on loopback for the whole test session (see the module docstring)."""
    try:
        server, process = start_sshd(tmp_path_factory.mktemp("sshd"))
    except (SSHDUnavailable, subprocess.CalledProcessError, OSError) as error:
        message = f"cannot start a loopback sshd for the SSH tests: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        stop_sshd(process)
