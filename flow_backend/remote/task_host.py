"""Where a running remote task's main node runs: its host's pooled connection and working folder.

A launcher that feeds a long-lived task (a warm worker) writes its input files there and reads its
marks, with commands sent over the provider's own pooled connection (one per host): tasks on the
same host share one ``destination`` and one connection.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from fabric import Connection

from flow_backend.remote.connection import RemoteResult, exec_command

__all__ = ["TaskHost"]


@dataclass(frozen=True)
class TaskHost:
    """A running task's main node.

    Attributes:
        destination: ``user@host:port`` of its host (tasks with the same one share the host).
        conn: The provider's pooled connection to that host.
        workdir: The absolute folder the task's command runs in.
    """

    destination: str
    conn: Connection
    workdir: str

    def path(self, relative: str) -> str:
        """The absolute remote path of ``relative`` (a path relative to the working folder)."""
        return str(PurePosixPath(self.workdir) / relative)

    def run(self, script: str, timeout: float | None = 120.0) -> RemoteResult:
        """Run a bash ``script`` (sent on stdin, so nothing lands in an argv) in the working folder."""
        body = f"cd {shlex.quote(self.workdir)} || exit 1\n{script}"
        return exec_command(self.conn, "bash -s", stdin=body.encode(), timeout=timeout)
