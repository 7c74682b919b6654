"""The ``ssh`` provider: tasks on the user's own hosts over SSH, state on local disk."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from flow_backend.errors import FlowError, InsufficientQuotaError, ValidationError
from flow_backend.models import TaskRecord, TaskStatus, utc_now
from flow_backend.providers.base import Provider
from flow_backend.providers.ssh.hosts import HostPool
from flow_backend.providers.ssh.launch import plan_nodes, start_nodes, stop_nodes
from flow_backend.providers.ssh.placement import HostUsage, choose_hosts, usage_of
from flow_backend.providers.ssh.state import NodePlacement, SSHTaskState, StateStore
from flow_backend.providers.ssh.tracker import TaskTracker
from flow_backend.remote import (
    TaskHost,
    download,
    follow_logs,
    interactive_shell,
    parse_destination,
    read_statuses,
    run_shell,
    ssh_command_line,
    tail_logs,
)
from flow_backend.secret_env import split_secret_env

if TYPE_CHECKING:
    from flow_backend.settings import FlowSettings
    from flow_backend.task_config import TaskConfig

__all__ = ["SSHProvider"]


class SSHProvider(Provider):
    """Runs tasks on ``ssh_hosts`` (``user@host:port``) with ``ssh_key_path``.

    Tasks go to free hosts (one CPU task per host, GPU tasks on free ``nvidia-smi`` GPUs) and wait
    ``pending`` otherwise; a process that polls starts waiting tasks once hosts are free (a task with
    secret environment values only from the process that submitted it). State lives in
    ``FLOW_HOME/ssh``, so ``flow status/logs/cancel`` work from any process.
    """

    name = "ssh"
    reaches_tasks = True

    def __init__(self, settings: FlowSettings) -> None:
        super().__init__(settings)
        self.hosts = [str(parse_destination(host)) for host in settings.ssh_hosts]
        repeated = sorted({host for host in self.hosts if self.hosts.count(host) > 1})
        if repeated:
            raise ValidationError(
                f"ssh_hosts lists {repeated[0]} more than once",
                field="ssh_hosts",
                value=settings.ssh_hosts,
                hint="List each host once; a host runs several GPU tasks when it has the GPUs",
            )
        self._home_key = str(Path(settings.home).expanduser().resolve())
        self._store = StateStore(Path(settings.home).expanduser())
        self._pool = HostPool(
            settings.ssh_key_path,
            Path(settings.home).expanduser() / "known_hosts",
            settings.ssh_remote_dir,
        )
        self._schedule_lock = threading.Lock()
        self._tracker = TaskTracker(
            self._store, self._pool, self._home_key, settings.stop_grace_seconds
        )

    # -- submit --------------------------------------------------------------------------------
    def submit(self, config: TaskConfig) -> TaskRecord:
        """Record the task and start it on free hosts, or leave it ``pending`` until some are free."""
        if not self.hosts:
            raise ValidationError(
                "the ssh provider has no hosts",
                field="ssh_hosts",
                value=[],
                hint="Set ssh_hosts (or FLOW_SSH_HOSTS=user@gpu1:22,user@gpu2:22)",
            )
        if config.volumes:
            raise ValidationError(
                f"the ssh provider has no volumes (asked for {config.volumes[0].name!r})",
                field="volumes",
                value=[volume.name for volume in config.volumes],
                hint="Use a folder on the hosts (pass its path in env) or the mithril provider",
            )
        instance = config.instance
        if config.num_instances > len(self.hosts):
            raise InsufficientQuotaError(
                f"num_instances={config.num_instances} needs that many distinct hosts; "
                f"ssh_hosts lists {len(self.hosts)}",
                field="num_instances",
                value=config.num_instances,
                hint="Add hosts to ssh_hosts or lower num_instances",
            )
        gpus_per_node, note = self._gpus_per_node(instance.name, instance.gpu_count, config)
        if config.image:
            note = "; ".join(
                filter(
                    None, [note, f"image {config.image!r} is not used: hosts run their own tools"]
                )
            )
        code_root = None
        if config.upload_code:
            code_root = str(Path(config.code_root or os.getcwd()).expanduser().resolve())
            if not Path(code_root).is_dir():
                raise ValidationError(
                    f"code_root {code_root!r} is not a folder",
                    field="code_root",
                    value=config.code_root,
                    hint="Give the project folder to upload, or set upload_code=False",
                )
        task_id = f"ssh-{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
        record = TaskRecord(
            task_id=task_id,
            name=config.name,
            provider=self.name,
            instance_type=instance.name,
            num_instances=config.num_instances,
            message=note,
        )
        plain_env, secret_env = split_secret_env(config.env)
        state = SSHTaskState(
            record=record,
            command=config.command_string,
            working_dir=config.working_dir,
            upload_code=config.upload_code,
            code_root=code_root,
            gpus_per_node=gpus_per_node,
            env=plain_env,
            secret_env_names=sorted(secret_env),
            max_run_time_hours=config.max_run_time_hours,
            owner_pid=os.getpid(),
            owner_host=socket.gethostname(),
        )
        self._tracker.remember_secrets(task_id, secret_env)
        self._store.save(state)
        self._store.set_waiting(task_id, True)
        self._schedule()
        return self._store.load(task_id).record

    def _gpus_per_node(
        self, type_name: str, wanted: int, config: TaskConfig
    ) -> tuple[int, str | None]:
        if wanted == 0:
            return 0, None
        host_gpus = self._host_gpus()
        if not any(host_gpus.values()):
            return 0, (
                f"instance type {type_name!r} asks for {wanted} GPU(s) per node, but no host in "
                "ssh_hosts reports GPUs (nvidia-smi): running without GPUs"
            )
        fitting = [host for host, gpus in host_gpus.items() if len(gpus) >= wanted]
        if len(fitting) < config.num_instances:
            found = ", ".join(f"{host}: {len(gpus)}" for host, gpus in host_gpus.items())
            raise InsufficientQuotaError(
                f"instance type {type_name!r} needs {wanted} GPU(s) on each of "
                f"{config.num_instances} host(s); GPUs per host: {found}",
                field="instance_type",
                value=config.instance_type,
                hint="Pick a type with fewer GPUs, lower num_instances, or add hosts",
            )
        return wanted, None

    def _host_gpus(self) -> dict[str, list[str]]:
        """Each host's GPU indices, asked of all hosts at once (cached per host once known)."""
        return dict(zip(self.hosts, self._pool.each(self.hosts, self._pool.gpus), strict=True))

    # -- scheduling ----------------------------------------------------------------------------
    def _schedule(self) -> set[str]:
        """Start waiting tasks where there is room; returns the ids refreshed on the way.

        This process starts the tasks whose secrets it holds and every waiting task without secrets.
        """
        if not self._store.any_waiting():
            return set()
        launches: list[SSHTaskState] = []
        with self._schedule_lock, self._store.locked():
            states = self._store.all()
            active = [s for s in states if s.nodes and not s.record.status.is_terminal]
            active = self._tracker.refresh(active)
            usage = usage_of(
                (node.host, node.gpus, s.gpus_per_node == 0)
                for s in active
                if not s.record.status.is_terminal
                for node in s.nodes
            )
            waiting = sorted(
                (s for s in states if not s.nodes and self._tracker.can_start(s)),
                key=lambda s: s.record.created_at,
            )
            # asked once per pass, not per waiting task: an unreachable host is not cached
            host_gpus = self._host_gpus() if any(s.gpus_per_node for s in waiting) else {}
            for state in waiting:
                if state.record.status.is_terminal:
                    self._tracker.forget(state.task_id)
                    continue
                chosen = choose_hosts(
                    self.hosts,
                    host_gpus if state.gpus_per_node else {},
                    usage,
                    num_nodes=state.record.num_instances,
                    gpus_per_node=state.gpus_per_node,
                )
                if chosen is None:
                    continue
                try:
                    state.nodes = plan_nodes(state, chosen, self._pool)
                except FlowError as error:
                    self._tracker.finish(state, TaskStatus.FAILED, message=str(error))
                    continue
                state.record.status = TaskStatus.PROVISIONING
                state.record.ssh_destination = state.nodes[0].host
                self._store.save(state)
                self._store.set_waiting(state.task_id, False)
                for node in state.nodes:
                    held = usage.setdefault(node.host, HostUsage())
                    held.gpus.update(node.gpus)
                    held.cpu_tasks += int(state.gpus_per_node == 0)
                launches.append(state)
        self._pool.each(launches, self._launch)
        return {s.task_id for s in active} | {s.task_id for s in launches}

    def _launch(self, state: SSHTaskState) -> None:
        env = {**state.env, **(self._tracker.secrets_of(state.task_id) or {})}
        try:
            start_nodes(state, self._pool, env)
        except FlowError as error:
            self._tracker.finish(state, TaskStatus.FAILED, message=f"could not start: {error}")
            return
        finally:
            self._tracker.forget(state.task_id)
        state.record.status = TaskStatus.RUNNING
        state.record.started_at = utc_now()
        stored = self._store.save(state)
        if stored.record.status.is_terminal or stored.cancel_requested:  # cancelled meanwhile
            stop_nodes(state.nodes, self._pool, grace_seconds=self.settings.stop_grace_seconds)

    def get(self, task_id: str) -> TaskRecord:
        """Current record of one task."""
        return self.get_many([task_id])[task_id]

    def get_many(self, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """Current records of many tasks: one SSH round trip per host, whatever their number."""
        states = [self._store.load(task_id) for task_id in task_ids]
        refreshed = self._schedule()
        if refreshed:
            states = [self._store.load(task_id) for task_id in task_ids]
        stale = [s for s in states if s.task_id not in refreshed]
        fresh = {s.task_id: s for s in self._tracker.refresh(stale)}
        return {s.task_id: fresh.get(s.task_id, s).record for s in states}

    def list_tasks(
        self, *, active_only: bool = False, name_prefix: str | None = None
    ) -> list[TaskRecord]:
        """Every task of this FLOW_HOME, newest first (live ones refreshed)."""
        ids = [s.task_id for s in self._store.all()]
        records = list(self.get_many(ids).values())
        if active_only:
            records = [r for r in records if not r.status.is_terminal]
        if name_prefix:
            records = [r for r in records if r.name.startswith(name_prefix)]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def wait_for_change(self, task_id: str, timeout: float) -> None:
        """Sleep up to ``timeout`` (at most the poll interval)."""
        time.sleep(max(0.0, min(timeout, self.settings.poll_interval)))

    # -- control -------------------------------------------------------------------------------
    def cancel(self, task_id: str) -> TaskRecord:
        """Stop every node's process group (TERM, then KILL) and mark the task cancelled."""
        state = self._store.load(task_id)
        if state.record.status.is_terminal:
            return state.record
        state.cancel_requested = True
        state = self._store.save(state)
        if state.record.status.is_terminal:
            return state.record
        exit_code = None
        if state.nodes:
            stop_nodes(state.nodes, self._pool, grace_seconds=self.settings.stop_grace_seconds)
            statuses = read_statuses(
                self._pool.conn(state.nodes[0].host), [state.nodes[0].task_dir]
            )
            exit_code = next(iter(statuses.values())).exit_code
        return self._tracker.finish(
            state, TaskStatus.CANCELLED, exit_code=exit_code, message="cancelled"
        ).record

    def _rank0(self, task_id: str) -> tuple[SSHTaskState, NodePlacement | None]:
        state = self._store.load(task_id)
        return state, (state.nodes[0] if state.nodes else None)

    def logs(self, task_id: str, tail: int | None = None) -> str:
        """Rank 0's output so far (``""`` while the task waits for a host)."""
        _, node = self._rank0(task_id)
        if node is None:
            return ""
        return tail_logs(self._pool.conn(node.host), node.task_dir, tail)

    def follow_logs(self, task_id: str) -> Iterator[str]:
        """Rank 0's log lines as they come, until the task ends."""
        while True:
            record = self.get(task_id)
            state, node = self._rank0(task_id)
            if node is not None and state.record.status is not TaskStatus.PROVISIONING:
                break
            if record.status.is_terminal:
                return
            time.sleep(self.settings.poll_interval)
        yield from follow_logs(
            self._pool.conn(node.host), node.task_dir, poll_interval=self.settings.poll_interval
        )

    def _placed(self, task_id: str) -> NodePlacement:
        state, node = self._rank0(task_id)
        if node is None:
            raise ValidationError(
                f"task {task_id!r} is {state.record.status.value} and has no host yet",
                field="task_id",
                value=task_id,
                hint="Wait until it runs (`flow status`)",
            )
        return node

    def shell(self, task_id: str, command: str | None = None) -> str:
        """Run ``command`` in rank 0's working folder and return its output; no command: log in."""
        node = self._placed(task_id)
        if command is None:
            destination = parse_destination(node.host)
            interactive_shell(destination, self.settings.ssh_key_path, cwd=node.workdir)
            return ""
        return run_shell(self._pool.conn(node.host), command, cwd=node.workdir)

    def shell_command(self, task_id: str) -> str | None:
        """``ssh -i KEY -p PORT user@host`` of rank 0's host (``None`` before placement)."""
        _, node = self._rank0(task_id)
        if node is None:
            return None
        return ssh_command_line(parse_destination(node.host), self.settings.ssh_key_path)

    def task_host(self, task_id: str) -> TaskHost | None:
        """Rank 0's host (its pooled connection) and working folder, once the task is placed."""
        _, node = self._rank0(task_id)
        if node is None:
            return None
        return TaskHost(node.host, self._pool.conn(node.host), node.workdir)

    def download(self, task_id: str, remote_path: str, local_path: Path) -> None:
        """Copy a file or folder from rank 0's host (relative paths: its working folder)."""
        node = self._placed(task_id)
        path = remote_path
        if not PurePosixPath(remote_path).is_absolute() and not remote_path.startswith("~/"):
            path = str(PurePosixPath(node.workdir) / remote_path)
        download(self._pool.conn(node.host), path, local_path)

    def close(self) -> None:
        """Close the SSH connections (tasks keep running)."""
        self._pool.close()
