"""The ``ssh`` provider: run tasks on the user's own hosts over SSH (fabric)."""

from flow_backend.providers.ssh.provider import SSHProvider

__all__ = ["SSHProvider"]
