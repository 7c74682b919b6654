"""A real SLURM cluster on this machine (one node, or several slurmd on this host), for tests and
demos (``flow slurm-cluster``).

It runs Debian's ``slurm-wlm`` and ``munge`` as root with everything under one folder: a private
``munged`` (its own key and socket, so the system's munge is left alone), ``slurmctld`` and
``slurmd`` on free ports, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none`` (no
cgroups needed), ``SelectType=select/cons_tres``, no accounting database. The node is described by
``slurmd -C`` (its real CPUs and memory, hostname ``hostname -s``); each CPU may be shared by
``jobs_per_cpu`` jobs so short test jobs do not queue behind each other on a small machine.

Clients reach it through the ``slurm.conf`` it writes (``SLURM_CONF=<folder>/slurm.conf``, or the
provider's ``slurm_conf`` setting).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PARTITION", "SlurmCluster", "SlurmUnavailable", "start_cluster"]

#: The partition of the one-node cluster.
PARTITION = "debug"
_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
_READY_SECONDS = 60.0


class SlurmUnavailable(RuntimeError):
    """SLURM or munge is missing, or the cluster did not come up (the message says why)."""


@dataclass
class SlurmCluster:
    """A running cluster on this machine.

    Attributes:
        workdir: Folder with its config, state, logs and sockets.
        nodes: The nodes' names (``hostname -s``; ``<host>-1``, ``<host>-2``, ... for several).
        cpus: CPUs of each node.
        processes: munged, slurmctld and each slurmd, in start order.
    """

    workdir: Path
    nodes: list[str]
    cpus: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        """The ``slurm.conf`` clients use (``SLURM_CONF``)."""
        return self.workdir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at the cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def logs(self) -> str:
        """The tail of each daemon's log (for failure messages)."""
        parts = []
        for name in ("munged.log", "slurmctld.log", *(f"slurmd-{n}.log" for n in self.nodes)):
            path = self.workdir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-15:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (slurmd first)."""
        if self.processes and all(process.poll() is None for process in self.processes):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["scancel", "--full", f"--partition={PARTITION}"],
                    env=self.env,
                    capture_output=True,
                    timeout=15,
                    check=False,
                )
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and _job_count(self) > 0:
                    time.sleep(0.2)
        for process in reversed(self.processes):
            _stop(process)
        self.processes.clear()


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _node_shape() -> tuple[str, str, int]:
    """``(hostname, "CPUs=... RealMemory=...", cpus)`` of this machine, from ``slurmd -C``."""
    result = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("NodeName=")), None)
    if line is None:
        raise SlurmUnavailable(f"`slurmd -C` did not describe this node: {result.stderr.strip()}")
    values = dict(part.split("=", 1) for part in line.split() if "=" in part)
    memory = max(256, int(values.get("RealMemory", "1024")) - 512)  # leave room for the OS
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    described = " ".join(f"{key}={values[key]}" for key in keys if key in values)
    host = socket.gethostname().split(".")[0]
    return host, f"{described} RealMemory={memory}", int(values.get("CPUs", "1"))


def write_config(workdir: Path, *, nodes: int = 1, jobs_per_cpu: int = 4) -> tuple[list[str], int]:
    """Write ``slurm.conf`` for a cluster of ``nodes`` nodes on this machine in ``workdir``
    (several: one slurmd each, all on this host); returns (node names, CPUs per node)."""
    host, shape, cpus = _node_shape()
    names = [host] if nodes == 1 else [f"{host}-{i}" for i in range(1, nodes + 1)]
    ctld_port, *ports = _free_ports(1 + nodes)
    for sub in ("state", *(f"spool/{name}" for name in names)):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    node_lines = [
        f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} {shape} State=UNKNOWN"
        for name, port in zip(names, ports, strict=True)
    ]
    lines = [
        "ClusterName=flowdemo",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={ctld_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # cred_expire: a requeued job waits this long before it may start again (default 120 s)
        f"AuthInfo=socket={workdir / 'munge.socket'},cred_expire=5",
        f"StateSaveLocation={workdir / 'state'}",
        f"SlurmdSpoolDir={workdir / 'spool'}/%n",
        f"SlurmctldPidFile={workdir / 'slurmctld.pid'}",
        f"SlurmdPidFile={workdir}/slurmd-%n.pid",
        f"SlurmctldLogFile={workdir / 'slurmctld.log'}",
        f"SlurmdLogFile={workdir}/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/builtin",
        # start batch jobs as soon as they arrive (the default batches them for up to 3 s); look at
        # pending jobs every 2 s, not 30-60 s (a requeued job's wait ends without an event).
        # sched/builtin reads the first "interval=" in the line as its own: it must come first.
        "SchedulerParameters=interval=2,sched_interval=2,batch_sched_delay=0,sched_min_interval=0",
        "MpiDefault=none",
        "SwitchType=switch/none",
        # no slurmdbd: jobs are followed with squeue while SLURM keeps them (MinJobAge) and the
        # exit-code file the provider's batch script writes
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "ReturnToService=2",
        "MinJobAge=300",
        "KillWait=2",
        "InactiveLimit=0",
        "MessageTimeout=10",
        "SlurmdTimeout=300",
        "SlurmctldTimeout=300",
        "MailProg=/bin/true",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        *node_lines,
        f"PartitionName={PARTITION} Nodes={','.join(names)} Default=YES MaxTime=INFINITE State=UP "
        f"OverSubscribe=FORCE:{jobs_per_cpu}",
        "",
    ]
    (workdir / "slurm.conf").write_text("\n".join(lines))
    return names, cpus


def _start_munged(workdir: Path) -> subprocess.Popen[bytes]:
    key = workdir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    return subprocess.Popen(
        [
            "munged",
            "--foreground",
            "--force",
            f"--socket={workdir / 'munge.socket'}",
            f"--key-file={key}",
            f"--pid-file={workdir / 'munged.pid'}",
            f"--log-file={workdir / 'munged.log'}",
            f"--seed-file={workdir / 'munged.seed'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "munged.out").open("ab"),
        start_new_session=True,
    )


def _wait(
    check: object, process: subprocess.Popen[bytes], what: str, cluster: SlurmCluster
) -> None:
    assert callable(check)
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SlurmUnavailable(f"{what} exited with {process.returncode}:\n{cluster.logs()}")
        if check():
            return
        time.sleep(0.1)
    raise SlurmUnavailable(f"{what} did not come up in {_READY_SECONDS:.0f} s:\n{cluster.logs()}")


def _nodes_ready(cluster: SlurmCluster) -> bool:
    result = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%N %T"],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=False,
    )
    states = dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)
    return all(
        re.fullmatch(r"idle|mixed|allocated", states.get(name, "")) for name in cluster.nodes
    )


def _job_count(cluster: SlurmCluster) -> int:
    result = subprocess.run(
        ["squeue", "--noheader", "--format=%i"],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=False,
    )
    return len(result.stdout.split()) if result.returncode == 0 else 0


def start_cluster(workdir: Path, *, nodes: int = 1, jobs_per_cpu: int = 4) -> SlurmCluster:
    """Start munged, slurmctld and one slurmd per node with state under ``workdir``; wait until
    every node is idle.

    Must run as root (the daemons run as root, as on a one-machine lab setup).

    Raises:
        SlurmUnavailable: A tool is missing, this is not root, or a daemon did not come up (the
            message carries the daemons' log tails).
    """
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        raise SlurmUnavailable(
            f"{', '.join(missing)} not found; install SLURM and munge "
            "(apt-get install -y slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        raise SlurmUnavailable("the one-node SLURM cluster runs its daemons as root; run as root")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # munged refuses group- or world-writable socket folders
    names, cpus = write_config(workdir, nodes=nodes, jobs_per_cpu=jobs_per_cpu)
    cluster = SlurmCluster(workdir=workdir, nodes=names, cpus=cpus)
    try:
        munged = _start_munged(workdir)
        cluster.processes.append(munged)
        _wait(lambda: (workdir / "munge.socket").exists(), munged, "munged", cluster)
        conf = str(cluster.conf)
        daemons = [("slurmctld", ["-i"])] + [(f"slurmd-{n}", ["-N", n]) for n in names]
        for name, extra in daemons:
            process = subprocess.Popen(
                [name.split("-")[0], "-D", "-f", conf, *extra],
                stdout=subprocess.DEVNULL,
                stderr=(workdir / f"{name}.out").open("ab"),
                env=cluster.env,
                start_new_session=True,
            )
            cluster.processes.append(process)
        _wait(lambda: _nodes_ready(cluster), cluster.processes[-1], "the SLURM nodes", cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
