"""The SSH side of a Mithril task: find each instance's node folder, hand it its environment, read
how it is doing, collect its log and results. Built on :mod:`flow_backend.remote`.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from fabric import Connection

from flow_backend.errors import FlowError, HostKeyChangedError
from flow_backend.providers.mithril.api import Instance
from flow_backend.providers.mithril.startup_script import (
    GO_FILE,
    GO_MARK,
    READY_FILE,
    node_glob,
    task_root,
)
from flow_backend.providers.ssh.hosts import HostPool
from flow_backend.remote import (
    OUTPUT_LOG,
    RemoteStatus,
    download,
    exec_command,
    parse_destination,
    read_statuses,
    upload_code,
)

__all__ = ["DEFAULT_SSH_USER", "LaunchPlan", "NodeOps", "destination_of"]

logger = logging.getLogger(__name__)

DEFAULT_SSH_USER = "ubuntu"


def destination_of(instance: Instance, ssh_user: str = DEFAULT_SSH_USER) -> str | None:
    """``user@host:port`` of an instance (``ssh_user`` when its address names no user)."""
    if not instance.ssh_destination:
        return None
    text = instance.ssh_destination.strip()
    if "@" not in text:
        text = f"{ssh_user}@{text}"
    return str(parse_destination(text, field="ssh_destination"))


@dataclass
class LaunchPlan:
    """What the submitting process keeps in memory (never on disk: ``env`` may hold secrets)."""

    task_id: str
    name: str
    instance_type: str
    env: dict[str, str]
    working_dir: str | None
    code_root: str | None
    started: set[str] = field(default_factory=set)
    ran: bool = False  # the task was seen running (then the boot limit no longer applies)


@dataclass
class NodeView:
    """One node of a task as seen over SSH in this poll."""

    rank: int
    instance_fid: str
    destination: str
    node_dir: str | None = None
    status: RemoteStatus | None = None


class NodeOps:
    """SSH operations on task nodes; connections are pooled per destination."""

    def __init__(self, key_path: Path, known_hosts: Path, root: str) -> None:
        self.root = root
        self.code_root = f"{root}/.code"
        self.pool = HostPool(key_path, known_hosts, self.code_root)
        self._node_dirs: dict[str, str] = {}  # instance fid → node folder
        self._instance_at: dict[str, str] = {}  # destination → the instance answering there
        self._refused: dict[str, str] = {}  # instance fid → why its host key was refused
        self._lock = threading.Lock()

    def conn(self, destination: str) -> Connection:
        """The connection to the instance at ``destination``, its host key bound to its id."""
        with self._lock:
            fid = self._instance_at.get(destination)
        return self.pool.conn(destination, f"mithril:{fid}" if fid else None)

    def _trouble(self, destination: str, error: FlowError) -> str:
        """``error`` as a host's error text; a refused host key is kept against its instance."""
        if isinstance(error, HostKeyChangedError):
            with self._lock:
                fid = self._instance_at.get(destination)
                if fid:
                    self._refused[fid] = str(error)
        return str(error)

    def refused(self, instance_fid: str) -> str | None:
        """Why the instance was refused (its host key changed), if it was: never trusted again."""
        with self._lock:
            return self._refused.get(instance_fid)

    def bind(self, nodes: Sequence[NodeView]) -> None:
        """Note which instance answers at each address (addresses are reused by new instances).

        An address keeps its instance while that instance is still seen there (several share one
        address only on a test fake); otherwise the new one takes it over.
        """
        seen: dict[str, list[str]] = {}
        for node in nodes:
            seen.setdefault(node.destination, []).append(node.instance_fid)
        with self._lock:
            for destination, fids in seen.items():
                if self._instance_at.get(destination) not in fids:
                    self._instance_at[destination] = fids[0]

    def known_dir(self, instance_fid: str) -> str | None:
        with self._lock:
            return self._node_dirs.get(instance_fid)

    def discover(self, tasks: Sequence[tuple[str, Sequence[NodeView]]]) -> dict[str, str]:
        """Fill in ``node_dir`` of each node whose startup script has marked itself ready.

        One SSH round trip per host for all the tasks given. Returns an error text per host that
        could not be asked (the nodes there stay undiscovered until the next poll).
        """
        self.bind([node for _, nodes in tasks for node in nodes])
        by_destination: dict[str, list[tuple[str, NodeView]]] = {}
        for task_name, nodes in tasks:
            for node in nodes:
                node.node_dir = node.node_dir or self.known_dir(node.instance_fid)
                if node.node_dir is None:
                    by_destination.setdefault(node.destination, []).append((task_name, node))

        def ask(item: tuple[str, list[tuple[str, NodeView]]]) -> str | None:
            destination, group = item
            script = "".join(
                f'for d in {node_glob(self.root, name)}; do [ -f "${{d}}{READY_FILE}" ] '
                f'&& echo "{name} ${{d%/}}"; done\n'
                for name in sorted({name for name, _ in group})
            )
            try:
                result = exec_command(self.conn(destination), "bash -s", stdin=script.encode())
            except FlowError as error:
                return self._trouble(destination, error)
            ready: dict[str, list[str]] = {}
            for line in result.text.splitlines():
                name, _, folder = line.strip().partition(" ")
                if folder:
                    ready.setdefault(name, []).append(folder)
            for name, node in group:
                folders = ready.get(name, [])
                exact = [d for d in folders if PurePosixPath(d).name == node.instance_fid]
                # a real instance has exactly one node folder; the fake's share one machine
                if exact or len(folders) == 1:
                    node.node_dir = (exact or folders)[0]
                    with self._lock:
                        self._node_dirs[node.instance_fid] = node.node_dir
            return None

        # every instance has an address of its own on a cloud: the hosts are asked concurrently
        items = list(by_destination.items())
        outcomes = self.pool.each(items, ask)
        return {item[0]: error for item, error in zip(items, outcomes, strict=True) if error}

    def read(self, nodes: Sequence[NodeView]) -> dict[str, str]:
        """Fill in ``status`` of every node with a known folder: one round trip per host.

        Returns an error text per host that could not be read.
        """
        by_destination: dict[str, list[NodeView]] = {}
        for node in nodes:
            if node.node_dir:
                by_destination.setdefault(node.destination, []).append(node)

        def ask(item: tuple[str, list[NodeView]]) -> str | None:
            destination, group = item
            try:
                statuses = read_statuses(
                    self.conn(destination), [n.node_dir for n in group if n.node_dir]
                )
            except FlowError as error:
                return self._trouble(destination, error)
            for node in group:
                node.status = statuses.get(node.node_dir or "")
            return None

        items = list(by_destination.items())  # concurrently, as in discover()
        outcomes = self.pool.each(items, ask)
        return {item[0]: error for item, error in zip(items, outcomes, strict=True) if error}

    def start(
        self, launches: Sequence[tuple[LaunchPlan, Sequence[NodeView], str]]
    ) -> dict[str, str]:
        """Hand every ready, not yet started node its environment: one round trip per host.

        ``launches`` holds ``(plan, nodes of the task, main IP)``. The code is uploaded first
        (once per host and version). The environment files travel inside the script on the
        channel's stdin (never in a command line) and are written with mode 600; the startup
        script deletes each once read. Returns an error text per host that failed.
        """
        errors: dict[str, str] = {}
        uploads = {
            (node.destination, plan.code_root)
            for plan, nodes, _ in launches
            for node in nodes
            if plan.code_root
        }

        def upload(
            item: tuple[str, str | None],
        ) -> tuple[tuple[str, str | None], str | BaseException]:
            destination, code_root = item
            try:
                return item, upload_code(
                    self.conn(destination), Path(code_root or "."), self.code_root
                ).path
            except FlowError as error:
                self._trouble(destination, error)
                return item, error

        code_dirs: dict[tuple[str, str | None], str] = {}
        for key, outcome in self.pool.each(sorted(uploads, key=str), upload):
            if isinstance(outcome, BaseException):
                errors[key[0]] = str(outcome)
            else:
                code_dirs[key] = outcome
        scripts: dict[str, list[str]] = {}
        started: dict[str, list[tuple[LaunchPlan, NodeView]]] = {}
        for plan, nodes, main_ip in launches:
            for node in nodes:
                if (
                    node.instance_fid in plan.started
                    or not node.node_dir
                    or node.destination in errors
                ):
                    continue
                workdir = plan.working_dir
                if plan.code_root:
                    code_dir = code_dirs[(node.destination, plan.code_root)]
                    if not (workdir and PurePosixPath(workdir).is_absolute()):
                        workdir = str(PurePosixPath(code_dir) / (workdir or "."))
                env = dict(plan.env)
                env.update(
                    FLOW_TASK_ID=plan.task_id,
                    FLOW_TASK_NAME=plan.name,
                    FLOW_INSTANCE_TYPE=plan.instance_type,
                    FLOW_NODE_RANK=str(node.rank),
                    FLOW_NUM_NODES=str(len(nodes)),
                    FLOW_MAIN_IP=main_ip,
                    FLOW_WORKDIR=workdir or node.node_dir,
                )
                env["FLOW_ENV_NAMES"] = " ".join(sorted(env))
                content = "".join(
                    f"export {name}={shlex.quote(value)}\n" for name, value in env.items()
                )
                # builtins only (printf, redirections): no process per node, nothing in an argv
                folder = shlex.quote(node.node_dir)
                scripts.setdefault(node.destination, []).append(
                    f"printf %s {shlex.quote(content)} > {folder}/{GO_FILE}\n: > {folder}/{GO_MARK}\n"
                )
                started.setdefault(node.destination, []).append((plan, node))

        def send(destination: str) -> tuple[str, str | None]:
            script = "set -e\numask 077\n" + "".join(scripts[destination])
            try:
                result = exec_command(self.conn(destination), "bash -s", stdin=script.encode())
            except FlowError as error:
                return destination, self._trouble(destination, error)
            if result.exit_code != 0:
                return (
                    destination,
                    f"could not write the tasks' environment: {result.error_text.strip()[-300:]}",
                )
            for plan, node in started[destination]:
                plan.started.add(node.instance_fid)
            return destination, None

        for destination, error in self.pool.each(sorted(scripts), send):
            if error is not None:
                errors[destination] = error
        return errors

    def workdir(self, node: NodeView) -> str:
        """The folder the node's command runs in (its node folder until the command starts)."""
        assert node.node_dir is not None
        quoted = shlex.quote(f"{node.node_dir}/workdir")
        result = exec_command(self.conn(node.destination), f"cat {quoted} 2>/dev/null || true")
        return result.text.strip() or node.node_dir

    def collect_logs(self, items: Sequence[tuple[NodeView, Path]]) -> None:
        """Copy each node's ``output.log`` to its local path: one ``tar`` per host.

        A node without a log gets an empty file.
        """
        by_destination: dict[str, dict[str, Path]] = {}
        for node, local in items:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
            if node.node_dir:
                remote = f"{node.node_dir}/{OUTPUT_LOG}".lstrip("/")
                by_destination.setdefault(node.destination, {})[remote] = local

        def bring(item: tuple[str, dict[str, Path]]) -> None:
            destination, targets = item
            listed = " ".join(shlex.quote(path) for path in targets)
            script = (
                f"cd / && flow_logs=() && for f in {listed}; do "
                '[ -f "$f" ] && flow_logs+=("$f"); done; '
                '[ ${#flow_logs[@]} -eq 0 ] || exec tar cf - "${flow_logs[@]}"\n'
            )
            try:
                with tempfile.TemporaryFile() as buffer:
                    exec_command(
                        self.conn(destination), "bash -s", stdin=script.encode(), stdout=buffer
                    )
                    buffer.seek(0)
                    if buffer.read(1):
                        buffer.seek(0)
                        _unpack_logs(buffer, targets)
            except (FlowError, tarfile.TarError) as error:  # logs stay empty; outcome recorded
                logger.warning("could not bring logs home from %s: %s", destination, error)

        self.pool.each(list(by_destination.items()), bring)  # hosts concurrently

    def collect_results(self, node: NodeView, working_dir: str) -> None:
        """Mirror the task's absolute working folder locally (not needed on this very machine)."""
        if parse_destination(node.destination).is_loopback:
            return
        download(self.conn(node.destination), working_dir, Path(working_dir))

    def clean(self, tasks: Sequence[tuple[str, str]]) -> None:
        """Remove the folders of ``(task name, destination)`` pairs: one round trip per host."""
        by_destination: dict[str, set[str]] = {}
        for name, destination in tasks:
            by_destination.setdefault(destination, set()).add(name)
        for destination, names in by_destination.items():
            folders = " ".join(shlex.quote(task_root(self.root, name)) for name in sorted(names))
            try:
                exec_command(self.conn(destination), f"rm -rf {folders}", timeout=60)
            except FlowError as error:  # best effort: the instance is going anyway
                logger.debug("could not clean %s on %s: %s", sorted(names), destination, error)

    def forget(self, instance_fids: Sequence[str]) -> None:
        with self._lock:
            for fid in instance_fids:
                self._node_dirs.pop(fid, None)
                self._refused.pop(fid, None)

    def close(self) -> None:
        self.pool.close()


def _unpack_logs(buffer: BinaryIO, targets: dict[str, Path]) -> None:
    """Write each log of a tar stream to its local file."""
    with tarfile.open(fileobj=buffer, mode="r|") as archive:
        for member in archive:
            target = targets.get(member.name.lstrip("/"))
            source = archive.extractfile(member) if member.isfile() else None
            if target is not None and source is not None:
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out)
