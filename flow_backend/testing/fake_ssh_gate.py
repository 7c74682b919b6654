"""Each fake instance's own SSH address: a loopback port that refuses until its sshd is "up".

The real cloud gives every instance an address of its own, reports it before sshd answers, and
hands a freed address (and port) to a later instance. A :class:`Gate` per instance reproduces that:
it holds a loopback port that refuses connections until its instance's sshd is "up" (bound, not
listening: the client sees "connection refused", as from a booting machine), then hands every
connection to its instance's server: by default the instance's own sshd
(:class:`~flow_backend.testing.fake_sshd.InstanceSshd`, a host key of its own), or (kindly) a
:class:`Forward` to one shared sshd. Closing it (instance terminated or preempted) cuts every
connection through it, and its port goes back to a pool that new gates try first.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Protocol

__all__ = ["Forward", "Gate", "GatePool", "Server"]


class Server(Protocol):
    """What answers the connections a gate accepts."""

    def serve(self, client: socket.socket) -> None:
        """Take over one accepted connection."""

    def cut(self) -> None:
        """End every connection served so far."""


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(1 << 16):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Forward:
    """Forwards connections to one shared sshd (kindly: every instance has the same host key)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open += [client, upstream]
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Gate:
    """One instance's address: refuses until ``ready_at`` (monotonic), then hands connections to
    ``server``."""

    def __init__(self, listener: socket.socket, server: Server, ready_at: float) -> None:
        self.listener = listener
        self.port: int = listener.getsockname()[1]
        self.server = server
        self.ready_at = ready_at
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._serve, name=f"fake-ssh-{self.port}", daemon=True).start()

    def _serve(self) -> None:
        while time.monotonic() < self.ready_at:  # sshd not up yet: connections are refused
            if self._closed:
                return
            time.sleep(min(0.05, max(0.0, self.ready_at - time.monotonic())))
        try:
            self.listener.listen(16)
        except OSError:
            return
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    client.close()
                    return
                try:
                    self.server.serve(client)
                except OSError:
                    client.close()

    def close(self) -> None:
        """The instance is gone: stop listening and cut every connection through it."""
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.server.cut()


class GatePool:
    """Opens gates, handing out freed ports first (addresses are reused)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._free: list[int] = []
        self._lock = threading.Lock()

    def open(self, server: Server, ready_at: float) -> Gate:
        with self._lock:
            reused = list(self._free)
        for port in [*reused, 0]:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.host, port))
            except OSError:
                listener.close()
                continue
            with self._lock:
                if port in self._free:
                    self._free.remove(port)
            return Gate(listener, server, ready_at)
        raise OSError("no loopback port left for a fake instance")  # pragma: no cover

    def close(self, gate: Gate) -> None:
        gate.close()
        with self._lock:
            self._free.append(gate.port)
