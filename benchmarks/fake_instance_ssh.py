"""What an sshd of its own per fake instance costs: ``sshd -i`` per connection beside one shared sshd.

Run: ``python benchmarks/fake_instance_ssh.py [connections] [commands]`` (as root, with OpenSSH's
``sshd``). The fake Mithril gives every instance its own host key by handing each connection to its
address to ``sshd -i`` with the instance's config (:mod:`flow_backend.testing.fake_sshd`); before,
every address forwarded to the one loopback sshd the tests start. Both are measured here through the
same gate (:mod:`flow_backend.testing.fake_ssh_gate`) and the provider's own SSH code
(:func:`flow_backend.remote.connect`, :func:`~flow_backend.remote.exec_command`): seconds per new
connection (handshake + one command), and per command on an open connection. Prints both and the
ratios.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sshd import start_sshd, stop_sshd

from flow_backend.remote import connect, exec_command, parse_destination
from flow_backend.testing.fake_ssh_gate import Forward, GatePool, Server
from flow_backend.testing.fake_sshd import InstanceSshd, sshd_binary


def _measure(destination: str, key: Path, connections: int, commands: int) -> tuple[float, float]:
    """Median seconds per new connection with one command, and per command on one connection."""
    per_connection = []
    for _ in range(connections):
        start = time.perf_counter()
        conn = connect(parse_destination(destination), key)
        exec_command(conn, "true")
        per_connection.append(time.perf_counter() - start)
        conn.close()
    conn = connect(parse_destination(destination), key)
    per_command = []
    for _ in range(commands):
        start = time.perf_counter()
        exec_command(conn, "true")
        per_command.append(time.perf_counter() - start)
    conn.close()
    return statistics.median(per_connection), statistics.median(per_command)


def main() -> None:
    connections = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    commands = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    binary = sshd_binary()
    if binary is None:
        sys.exit("no sshd here (apt-get install openssh-server)")
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        server, process = start_sshd(Path(tmp) / "shared")
        try:
            public = (server.workdir / "client_key.pub").read_text()
            pool = GatePool()
            servers: dict[str, Callable[[], Server]] = {
                "shared sshd (forwarded)": lambda: Forward((server.host, server.port)),
                "own sshd -i per instance": lambda: InstanceSshd(
                    Path(tmp) / "instance", [public], binary
                ),
            }
            results = {}
            for label, make in servers.items():
                gate = pool.open(make(), time.monotonic())
                destination = f"{server.user}@127.0.0.1:{gate.port}"
                results[label] = _measure(destination, server.key_path, connections, commands)
                pool.close(gate)
        finally:
            stop_sshd(process)
    shared, own = results["shared sshd (forwarded)"], results["own sshd -i per instance"]
    print(f"{connections} new connections (+1 command each), {commands} commands on one connection")
    for label, (per_conn, per_cmd) in results.items():
        print(
            f"  {label:26s} {per_conn * 1000:7.1f} ms/connection {per_cmd * 1000:6.1f} ms/command"
        )
    print(
        f"own/shared: {own[0] / shared[0]:.2f}x per connection, {own[1] / shared[1]:.2f}x per "
        "command (the provider keeps one connection per instance)"
    )


if __name__ == "__main__":
    main()
