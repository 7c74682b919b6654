"""Connections to the ssh provider's hosts, their remote folders and GPUs, cached per provider."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from fabric import Connection

from flow_backend.errors import FlowError
from flow_backend.remote import connect, exec_command, parse_destination, remote_home

__all__ = ["HostPool"]

T = TypeVar("T")
R = TypeVar("R")

_GPU_QUERY = "nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null"


def each(items: Iterable[T], work: Callable[[T], R]) -> list[R]:
    """Run ``work`` on every item, up to 8 at a time (SSH round trips and API calls overlap)."""
    todo = list(items)
    if len(todo) <= 1:
        return [work(item) for item in todo]
    with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
        return list(pool.map(work, todo))


class HostPool:
    """Open connections on demand and remember what each host has.

    Args:
        key_path: Private key for every host.
        known_hosts: Where trusted host keys of non-loopback hosts are recorded.
        remote_dir: Folder for code and task folders on each host (``~`` = remote home).
    """

    def __init__(self, key_path: Path | None, known_hosts: Path, remote_dir: str) -> None:
        self.key_path = key_path
        self.known_hosts = known_hosts
        self.remote_dir = remote_dir
        self._conns: dict[str, Connection] = {}
        self._aliases: dict[str, str | None] = {}
        self._roots: dict[str, str] = {}
        self._gpus: dict[str, list[str]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, host: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(host, threading.Lock())

    def conn(self, host: str, host_key_alias: str | None = None) -> Connection:
        """An open connection to ``host`` (``user@host:port``), reused across calls.

        ``host_key_alias`` binds the host key to a name such as a cloud instance id (see
        :func:`flow_backend.remote.connect`); a different alias for the same address (a new
        instance there) closes the old connection and opens a checked one.
        """
        with self._lock(host):
            conn = self._conns.get(host)
            if conn is not None and self._aliases.get(host) != host_key_alias:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            if conn is None:
                conn = connect(
                    parse_destination(host),
                    self.key_path,
                    known_hosts=self.known_hosts,
                    host_key_alias=host_key_alias,
                )
                self._conns[host] = conn
                self._aliases[host] = host_key_alias
            return conn

    def root(self, host: str) -> str:
        """Absolute remote folder of this provider on ``host``."""
        if host not in self._roots:
            base = self.remote_dir.rstrip("/") or "/"
            if base == "~" or base.startswith("~/"):
                base = remote_home(self.conn(host)).rstrip("/") + base[1:]
            self._roots[host] = base
        return self._roots[host]

    def gpus(self, host: str) -> list[str]:
        """GPU indices ``nvidia-smi`` lists on ``host`` (empty without GPUs or when unreachable)."""
        if host not in self._gpus:
            try:
                result = exec_command(self.conn(host), _GPU_QUERY, timeout=30)
            except FlowError:
                return []  # not cached: asked again once the host is reachable
            lines = result.text.split() if result.exit_code == 0 else []
            self._gpus[host] = [line.strip(",") for line in lines if line.strip(",").isdigit()]
        return self._gpus[host]

    def each(self, items: Iterable[T], work: Callable[[T], R]) -> list[R]:
        """Run ``work`` on every item concurrently (see :func:`each`)."""
        return each(items, work)

    def close(self) -> None:
        """Close every connection."""
        with self._guard:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
