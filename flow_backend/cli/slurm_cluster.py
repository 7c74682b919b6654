"""``flow slurm-cluster``: run a real one-node SLURM cluster on this machine for a demo.

The cluster (:mod:`flow_backend.providers.slurm.cluster`) is imported only when the subcommand
runs. It needs root and Debian's ``slurm-wlm`` and ``munge`` (``apt-get install -y slurm-wlm munge``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from flow_backend.errors import ProviderError

__all__ = ["register", "run_command"]


def register(subparsers: Any) -> None:
    """Add ``slurm-cluster``."""
    parser = subparsers.add_parser(
        "slurm-cluster", help="run a one-node SLURM cluster here (root; slurm-wlm and munge)"
    )
    parser.add_argument(
        "--dir", default=None, help="folder for its config, state and logs (default: temp)"
    )
    parser.add_argument(
        "--nodes", type=int, default=1, help="nodes (one slurmd each, all on this host; default 1)"
    )
    parser.add_argument(
        "--jobs-per-cpu", type=int, default=4, help="jobs that may share one CPU (default 4)"
    )
    parser.set_defaults(func=run_command)


def _at_least_one(name: str, value: int, what: str) -> None:
    if value < 1:
        option = "--" + name.replace("_", "-")
        raise ProviderError(
            f"{option} must be at least 1, got {value}",
            field=name,
            value=value,
            hint=f"Give {what}",
        )


def run_command(args: argparse.Namespace) -> int:
    """Start the cluster, print how to point ``flow`` at it, run until Ctrl-C or SIGTERM."""
    from flow_backend.providers.slurm.cluster import SlurmUnavailable, start_cluster

    _at_least_one("nodes", args.nodes, "how many nodes the cluster has, e.g. 2")
    _at_least_one("jobs_per_cpu", args.jobs_per_cpu, "how many jobs may share one CPU, e.g. 4")
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="flow-slurm-"))
    try:
        cluster = start_cluster(workdir, nodes=args.nodes, jobs_per_cpu=args.jobs_per_cpu)
    except SlurmUnavailable as error:
        raise ProviderError(
            f"cannot start the SLURM cluster: {error}", field="slurm", hint=None
        ) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(
            f"SLURM cluster of {len(cluster.nodes)} node(s) {', '.join(cluster.nodes)} "
            f"({cluster.cpus} CPUs each) in {workdir}",
            flush=True,
        )
        print(f"export SLURM_CONF={cluster.conf}", flush=True)
        print(f"export FLOW_PROVIDER=slurm FLOW_SLURM_CONF={cluster.conf}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        cluster.stop()
    print("SLURM cluster stopped.", flush=True)
    return 0
