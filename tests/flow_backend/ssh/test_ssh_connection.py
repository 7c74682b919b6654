"""Connecting: destinations, keys, unreachable hosts — each a clear flow_backend error."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from sshd import SSHServer

from flow_backend.errors import AuthenticationError, ProviderError, ValidationError
from flow_backend.remote import connect, exec_command, parse_destination, run_shell
from flow_backend.remote.shell import ssh_command_line


@pytest.mark.parametrize(
    ("text", "user", "host", "port"),
    [
        ("ubuntu@gpu1:2222", "ubuntu", "gpu1", 2222),
        ("ubuntu@gpu1", "ubuntu", "gpu1", 22),
        ("root@10.0.0.5:22", "root", "10.0.0.5", 22),
        ("me@[::1]:2200", "me", "::1", 2200),
    ],
)
def test_destinations_parse(text: str, user: str, host: str, port: int) -> None:
    dest = parse_destination(text)
    assert (dest.user, dest.host, dest.port) == (user, host, port)
    assert parse_destination(str(dest)) == dest


@pytest.mark.parametrize("text", ["", "user@", "a b@host", "user@host:99999", "user@host:port"])
def test_bad_destinations_name_the_setting_and_value(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_destination(text)
    assert info.value.field == "ssh_hosts"
    assert repr(text) in str(info.value) or "99999" in str(info.value)
    assert "user@host:port" in str(info.value)


def test_missing_key_file_is_a_validation_error(sshd: SSHServer, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ssh_key_path") as info:
        connect(parse_destination(sshd.destination), tmp_path / "no-key")
    assert str(tmp_path / "no-key") in str(info.value)


def test_a_key_the_host_does_not_accept_is_an_authentication_error(
    sshd: SSHServer, tmp_path: Path
) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(AuthenticationError, match="refused the SSH key") as info:
        connect(parse_destination(sshd.destination), other)
    assert sshd.destination in str(info.value)


def test_nothing_listening_is_a_provider_error_naming_the_host(sshd: SSHServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match=f"127.0.0.1:{port}") as info:
        connect(parse_destination(f"root@127.0.0.1:{port}"), sshd.key_path, connect_timeout=3)
    assert "sshd" in str(info.value)


def test_loopback_host_keys_are_not_recorded(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    conn = connect(parse_destination(sshd.alias_destination), sshd.key_path, known_hosts=known)
    try:
        assert exec_command(conn, "echo ok").text == "ok\n"
    finally:
        conn.close()
    assert not known.exists() or known.read_text() == ""


def test_shell_runs_in_a_folder_and_returns_both_streams(sshd: SSHServer, tmp_path: Path) -> None:
    conn = connect(parse_destination(sshd.destination), sshd.key_path)
    try:
        out = run_shell(conn, "pwd; echo oops >&2", cwd=str(tmp_path))
    finally:
        conn.close()
    assert out == f"{tmp_path}\noops\n"


def test_ssh_command_line_logs_in(sshd: SSHServer) -> None:
    line = ssh_command_line(parse_destination(sshd.destination), sshd.key_path)
    assert line == f"ssh -i {sshd.key_path} -p {sshd.port} {sshd.user}@127.0.0.1"
    result = subprocess.run(
        [
            *line.split(),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "echo",
            "logged-in",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "logged-in", result.stderr
