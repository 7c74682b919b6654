"""Open fabric connections and run commands over them, with errors mapped to flow_backend's.

Host keys (no prompts, ever):

* loopback hosts (``localhost``, 127.0.0.0/8, ``::1``) are accepted without being recorded: test and
  tunnel sshds get fresh host keys on reused ports, and a key on this machine proves nothing anyway;
* every other host is trusted on first use and recorded in ``known_hosts`` (``<FLOW_HOME>/known_hosts``
  when the caller passes it); keys in ``~/.ssh/known_hosts`` are honoured too. A host whose key later
  changes is refused with a message naming the file to edit.
* with ``host_key_alias`` (a cloud instance id), the key is bound to that name instead of the
  address, loopback included: clouds hand a freed address to a new instance with a new key, which
  is accepted (new id), while a changed key for the same instance id is refused
  (:class:`~flow_backend.errors.HostKeyChangedError`) — on every (re)connection, including the
  one a pooled connection makes after it dropped.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import paramiko
from fabric import Config, Connection

from flow_backend.errors import (
    AuthenticationError,
    HostKeyChangedError,
    ProviderError,
    ValidationError,
)
from flow_backend.remote.destination import SSHDestination

__all__ = ["RemoteResult", "connect", "exec_command", "translate_ssh_errors"]

# paramiko logs every connection at INFO ("Connected", "Authentication successful"); apps that log
# at INFO (Hydra does) would print that for every host. Quiet it unless the user set a level.
if logging.getLogger("paramiko").level == logging.NOTSET:
    logging.getLogger("paramiko").setLevel(logging.WARNING)
# Its transport thread also logs every failed handshake (a booting sshd, a dropped connection) with
# a traceback at ERROR; the same failure reaches the caller as an exception, which we translate.
if logging.getLogger("paramiko.transport").level == logging.NOTSET:
    logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)

# sshd allows 10 sessions per connection by default (MaxSessions); stay below it.
_MAX_CHANNELS = 8
_channel_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


@dataclass(frozen=True)
class RemoteResult:
    """What a remote command returned."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        """Stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def error_text(self) -> str:
        """Stderr decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stderr.decode("utf-8", errors="replace")


class _LoopbackPolicy(paramiko.MissingHostKeyPolicy):
    """Accept a loopback host's key without writing it anywhere."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        return None


class _BoundKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Check the key against the one recorded for an alias (the client loads no other keys, so
    paramiko asks this policy on every connection, reconnections included)."""

    def __init__(self, destination: SSHDestination, alias: str, known_hosts: Path) -> None:
        self.destination = destination
        self.alias = alias
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        try:
            _check_bound_key(key, self.destination, self.alias, self.known_hosts)
        except HostKeyChangedError:
            client.close()
            raise


def connect(
    destination: SSHDestination,
    key_path: Path | str | None,
    *,
    known_hosts: Path | None = None,
    connect_timeout: float = 15.0,
    host_key_alias: str | None = None,
) -> Connection:
    """Open an SSH connection with a private key and no prompts.

    Args:
        destination: Where to connect.
        key_path: Private key file; ``None`` uses the SSH agent and ``~/.ssh/id_*``.
        known_hosts: File recording trusted host keys of non-loopback hosts (created if missing).
        connect_timeout: Seconds to wait for the TCP connection and the SSH handshake.
        host_key_alias: Bind the host key to this name (e.g. an instance id) instead of the
            address; needs ``known_hosts``.

    Returns:
        An open fabric connection.

    Raises:
        ValidationError: The key file does not exist.
        AuthenticationError: The server refused the key.
        ProviderError: The host cannot be reached or its host key changed.
    """
    connect_kwargs: dict[str, Any] = {"banner_timeout": connect_timeout}
    if key_path is not None:
        key_file = Path(key_path).expanduser()
        if not key_file.is_file():
            raise ValidationError(
                f"ssh_key_path {str(key_path)!r} is not a file",
                field="ssh_key_path",
                value=str(key_path),
                hint="Set ssh_key_path to a private key whose public half the hosts authorize",
            )
        connect_kwargs.update(key_filename=str(key_file), look_for_keys=False, allow_agent=False)
    conn = Connection(
        host=destination.host,
        user=destination.user,
        port=destination.port,
        connect_timeout=int(max(1, connect_timeout)),
        connect_kwargs=connect_kwargs,
        config=Config(overrides={"load_ssh_configs": False}),
    )
    if host_key_alias and known_hosts:
        conn.client.set_missing_host_key_policy(
            _BoundKeyPolicy(destination, host_key_alias, known_hosts)
        )
    elif destination.is_loopback:
        conn.client.set_missing_host_key_policy(_LoopbackPolicy())
    else:
        with suppress(OSError):
            conn.client.load_system_host_keys()
        if known_hosts is not None:
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            known_hosts.touch(exist_ok=True)
            conn.client.load_host_keys(str(known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        with translate_ssh_errors(destination, key_path, known_hosts):
            conn.open()
            _no_delay(conn)
    except HostKeyChangedError:
        conn.close()
        raise
    return conn


_known_hosts_lock = threading.Lock()


def _check_bound_key(
    key: paramiko.PKey, destination: SSHDestination, alias: str, known_hosts: Path
) -> None:
    """Trust ``alias``'s key on first use; refuse a different key for the same alias later."""
    with _known_hosts_lock:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        known_hosts.touch(exist_ok=True)
        keys = paramiko.HostKeys(str(known_hosts))
        recorded = keys.lookup(alias)
        if recorded is not None:
            if recorded.get(key.get_name()) != key:
                raise HostKeyChangedError(
                    f"the host key of {alias} at {destination} changed since it was first trusted",
                    field="ssh_hosts",
                    value=str(destination),
                    hint=f"Someone else may answer at that address; if {alias} was really "
                    f"reinstalled, delete its line from {known_hosts} and retry",
                )
            return
        keys.add(alias, key.get_name(), key)
        keys.save(str(known_hosts))


def _no_delay(conn: Connection) -> None:
    """Send small packets at once: without it every channel open waits ~40 ms (delayed ACK)."""
    sock = getattr(conn.transport, "sock", None)
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextmanager
def translate_ssh_errors(
    destination: SSHDestination | str,
    key_path: Path | str | None = None,
    known_hosts: Path | None = None,
) -> Iterator[None]:
    """Turn paramiko/socket exceptions raised inside into flow_backend errors that say what to do."""
    where = str(destination)
    try:
        yield
    except (ProviderError, AuthenticationError, ValidationError):
        raise
    except paramiko.BadHostKeyException:
        file = known_hosts or "~/.ssh/known_hosts"
        raise HostKeyChangedError(
            f"the host key of {where} changed since it was first trusted",
            field="ssh_hosts",
            value=where,
            hint=f"If the host was reinstalled, delete its line from {file} and retry",
        ) from None
    except paramiko.AuthenticationException:
        raise AuthenticationError(
            f"{where} refused the SSH key {key_path or '(agent / default keys)'}",
            field="ssh_key_path",
            value=str(key_path) if key_path else None,
            hint="Add the key's public half to the host's authorized_keys, or fix ssh_key_path",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ProviderError(
            f"SSH to {where} failed: {exc or type(exc).__name__}",
            field="ssh_hosts",
            value=where,
            hint="Check that the host is up, the port is right and sshd is running",
        ) from None


def _slots(conn: Connection) -> threading.BoundedSemaphore:
    with _slots_lock:
        slots = _channel_slots.get(id(conn))
        if slots is None:
            slots = _channel_slots[id(conn)] = threading.BoundedSemaphore(_MAX_CHANNELS)
            weakref.finalize(conn, _channel_slots.pop, id(conn), None)
        return slots


def exec_command(
    conn: Connection,
    command: str,
    *,
    stdin: bytes | BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    timeout: float | None = 120.0,
) -> RemoteResult:
    """Run ``command`` on the remote host, feeding ``stdin`` and collecting both output streams.

    Args:
        conn: An open (or openable) connection.
        command: A shell command line (the remote login shell runs it).
        stdin: Bytes (or a binary file, streamed) sent to the command's standard input, then EOF.
        stdout: Binary file that receives standard output as it streams (then not in the result).
        timeout: Seconds without any data before giving up; ``None`` waits forever.

    Returns:
        The exit code and both output streams.

    Raises:
        ProviderError: The connection failed or the command timed out.
    """
    with translate_ssh_errors(f"{conn.user}@{conn.host}:{conn.port}"), _slots(conn):
        if not conn.is_connected:
            conn.open()
            _no_delay(conn)
        assert conn.transport is not None
        channel = conn.transport.open_session(timeout=timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            stderr_chunks: list[bytes] = []
            reader = threading.Thread(
                target=lambda: stderr_chunks.append(channel.makefile_stderr("rb").read()),
                daemon=True,
            )
            reader.start()
            if isinstance(stdin, bytes):
                channel.sendall(stdin)
            elif stdin is not None:
                while chunk := stdin.read(1 << 20):
                    channel.sendall(chunk)
            channel.shutdown_write()
            try:
                if stdout is None:
                    output = channel.makefile("rb").read()
                else:
                    output = b""
                    shutil.copyfileobj(channel.makefile("rb"), stdout, 1 << 20)
            except TimeoutError:
                raise ProviderError(
                    f"remote command on {conn.host} produced nothing for {timeout} s",
                    hint="The host may be overloaded or the connection stalled; retry",
                ) from None
            reader.join(timeout)
            exit_code = channel.recv_exit_status()
        finally:
            channel.close()
    return RemoteResult(exit_code=exit_code, stdout=output, stderr=b"".join(stderr_chunks))
