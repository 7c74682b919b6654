"""A real one-node SLURM cluster on this machine, for tests and demos (``flow slurm-cluster``).

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
    """A running one-node cluster.

    Attributes:
        workdir: Folder with its config, state, logs and sockets.
        node: The node's name (``hostname -s``).
        cpus: The node's CPUs.
        processes: munged, slurmctld and slurmd, in start order.
    """

    workdir: Path
    node: str
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
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
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


def _node_line() -> tuple[str, str, int]:
    """``(name, "NodeName=... CPUs=... RealMemory=...", cpus)`` from ``slurmd -C``."""
    result = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("NodeName=")), None)
    if line is None:
        raise SlurmUnavailable(f"`slurmd -C` did not describe this node: {result.stderr.strip()}")
    values = dict(part.split("=", 1) for part in line.split() if "=" in part)
    name = socket.gethostname().split(".")[0]
    memory = max(256, int(values.get("RealMemory", "1024")) - 512)  # leave room for the OS
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    described = " ".join(f"{key}={values[key]}" for key in keys if key in values)
    return (
        name,
        f"NodeName={name} NodeAddr=127.0.0.1 {described} RealMemory={memory}",
        int(values.get("CPUs", "1")),
    )


def write_config(workdir: Path, *, jobs_per_cpu: int = 4) -> tuple[str, int]:
    """Write ``slurm.conf`` for a one-node cluster in ``workdir``; returns (node name, CPUs)."""
    node, node_line, cpus = _node_line()
    ctld_port, slurmd_port = _free_ports(2)
    for sub in ("state", "spool"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    lines = [
        "ClusterName=flowdemo",
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={workdir / 'munge.socket'}",
        f"StateSaveLocation={workdir / 'state'}",
        f"SlurmdSpoolDir={workdir / 'spool'}",
        f"SlurmctldPidFile={workdir / 'slurmctld.pid'}",
        f"SlurmdPidFile={workdir / 'slurmd.pid'}",
        f"SlurmctldLogFile={workdir / 'slurmctld.log'}",
        f"SlurmdLogFile={workdir / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/builtin",
        # start batch jobs as soon as they arrive (the default batches them for up to 3 s)
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
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
        f"{node_line} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP "
        f"OverSubscribe=FORCE:{jobs_per_cpu}",
        "",
    ]
    (workdir / "slurm.conf").write_text("\n".join(lines))
    return node, cpus


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


def _node_state(cluster: SlurmCluster) -> str:
    result = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%T", f"--nodes={cluster.node}"],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=False,
    )
    return result.stdout.strip().lower() if result.returncode == 0 else ""


def _job_count(cluster: SlurmCluster) -> int:
    result = subprocess.run(
        ["squeue", "--noheader", "--format=%i"],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=False,
    )
    return len(result.stdout.split()) if result.returncode == 0 else 0


def start_cluster(workdir: Path, *, jobs_per_cpu: int = 4) -> SlurmCluster:
    """Start munged, slurmctld and slurmd with state under ``workdir``; wait for an idle node.

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
    node, cpus = write_config(workdir, jobs_per_cpu=jobs_per_cpu)
    cluster = SlurmCluster(workdir=workdir, node=node, cpus=cpus)
    try:
        munged = _start_munged(workdir)
        cluster.processes.append(munged)
        _wait(lambda: (workdir / "munge.socket").exists(), munged, "munged", cluster)
        conf = str(cluster.conf)
        for daemon in ("slurmctld", "slurmd"):
            args = [daemon, "-D", "-f", conf]
            args += ["-i"] if daemon == "slurmctld" else ["-N", node]
            process = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=(workdir / f"{daemon}.out").open("ab"),
                env=cluster.env,
                start_new_session=True,
            )
            cluster.processes.append(process)
        _wait(
            lambda: re.fullmatch(r"idle|mixed|allocated", _node_state(cluster)) is not None,
            cluster.processes[-1],
            "the SLURM node",
            cluster,
        )
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
