"""Fixtures of the SSH tests: an open connection to the session's loopback sshd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fabric import Connection
from sshd import SSHServer

from flow_backend.remote import connect, parse_destination


@pytest.fixture
def conn(sshd: SSHServer) -> Iterator[Connection]:
    """A fabric connection to the loopback sshd, closed after the test."""
    connection = connect(parse_destination(sshd.destination), sshd.key_path)
    try:
        yield connection
    finally:
        connection.close()
