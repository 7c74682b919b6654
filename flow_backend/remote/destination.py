"""Where a remote command runs: ``user@host:port`` parsed once, validated with a clear message."""

from __future__ import annotations

import getpass
import ipaddress
import re
from dataclasses import dataclass

from flow_backend.errors import ValidationError

__all__ = ["SSHDestination", "parse_destination"]

_DESTINATION = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
    r"(?::(?P<port>[0-9]+))?$"
)


@dataclass(frozen=True)
class SSHDestination:
    """One SSH endpoint.

    Attributes:
        user: Login name.
        host: Host name or IP address (IPv6 without brackets).
        port: TCP port of the SSH server.
    """

    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Whether the host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_destination(text: str, *, field: str = "ssh_hosts") -> SSHDestination:
    """Parse ``user@host:port`` (user defaults to the local user, port to 22).

    Args:
        text: The destination as the user wrote it.
        field: The setting it came from, named in the error message.

    Returns:
        The parsed destination.

    Raises:
        ValidationError: When ``text`` is not of the form ``user@host:port``.
    """
    match = _DESTINATION.match(text.strip()) if isinstance(text, str) else None
    hint = "Write each host as user@host:port, e.g. ubuntu@gpu1:22"
    if match is None:
        raise ValidationError(
            f"{field} has a bad entry {text!r}", field=field, value=text, hint=hint
        )
    port = int(match["port"] or 22)
    if not 0 < port < 65536:
        raise ValidationError(
            f"{field} entry {text!r} has port {port}, outside 1-65535",
            field=field,
            value=text,
            hint=hint,
        )
    host = match["host"].strip("[]")
    return SSHDestination(user=match["user"] or getpass.getuser(), host=host, port=port)
