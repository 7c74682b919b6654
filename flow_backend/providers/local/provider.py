"""The local provider: tasks are process trees on this machine, their state is files on disk."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import ClassVar

from flow_backend.errors import InsufficientQuotaError, TaskNotFoundError, ValidationError
from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.base import Provider, VolumeInfo
from flow_backend.providers.local import logs, pending, processes, volumes
from flow_backend.providers.local.forked import ForkedTask
from flow_backend.providers.local.gpus import GpuPool, detect_gpus, warn_cpu_once
from flow_backend.providers.local.launch import resolve_working_dir, shell_in, start_ranks
from flow_backend.providers.local.outcome import (
    conclude,
    over_time_limit,
    record_of,
    time_limit_message,
)
from flow_backend.providers.local.state import (
    EVENTS_SUFFIX,
    FinalState,
    StopRequest,
    TaskFiles,
    TaskSpec,
    utc_now,
)
from flow_backend.settings import FlowSettings
from flow_backend.task_config import TaskConfig

__all__ = ["LocalProvider"]

_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class LocalProvider(Provider):
    """Runs each task as real processes here; any process with the same ``FLOW_HOME`` sees them."""

    name: ClassVar[str] = "local"
    shares_files = True

    def __init__(self, settings: FlowSettings) -> None:
        super().__init__(settings)
        self._tasks_dir = settings.tasks_dir
        try:
            self._tasks_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValidationError(
                f"FLOW_HOME {str(settings.home)!r} is not usable: {error.strerror}",
                field="home",
                value=str(settings.home),
                hint="Point FLOW_HOME (or the home setting) at a writable directory",
            ) from None
        self._children: dict[str, list[subprocess.Popen[bytes] | ForkedTask]] = {}
        self._started_specs: dict[str, TaskSpec] = {}
        self._lock = threading.Lock()
        self._gpu_pool: GpuPool | None = None
        self._gpus_detected = False
        self._home_key = str(settings.home.resolve())

    # -- GPUs ----------------------------------------------------------------------------------
    def _pool(self) -> GpuPool | None:
        if not self._gpus_detected:
            gpus = detect_gpus(self.settings.local_gpu_ids)
            if gpus:
                self._gpu_pool = GpuPool(self.settings.home, gpus, self._has_ended)
            self._gpus_detected = True
        return self._gpu_pool

    def _has_ended(self, task_id: str) -> bool:
        files = TaskFiles(self._tasks_dir, task_id)
        if not files.exists():
            return True
        return self._derive(files, allow_start=False).status.is_terminal

    # -- submit --------------------------------------------------------------------------------
    def submit(self, config: TaskConfig) -> TaskRecord:
        """Start the task now, or leave it ``pending`` until enough GPUs are free."""
        instance = config.instance
        task_id = f"local-{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
        files = TaskFiles(self._tasks_dir, task_id)
        spec = TaskSpec(
            task_id=task_id,
            name=config.name,
            instance_type=instance.name,
            num_instances=config.num_instances,
            command=config.command_string,
            working_dir=resolve_working_dir(config),
            created_at=utc_now(),
            max_run_time_hours=config.max_run_time_hours,
            ports=config.ports,
            env_keys=sorted(config.env),
        )
        if config.image:
            note = (
                f"image {config.image!r} requested, but the local provider runs no containers: "
                "the host's Python and tools run this task"
            )
            spec.notes.append(note)
            spec.log_notes.append(note)
        needed = config.total_gpus
        pool = self._pool() if needed else None
        if needed and pool is None:
            spec.notes.append(warn_cpu_once(instance.name))
        elif pool is not None and needed > len(pool.gpus):
            raise InsufficientQuotaError(
                f"Instance type {instance.name!r} × {config.num_instances} needs {needed} GPUs; "
                f"this machine has {len(pool.gpus)}",
                field="instance_type",
                value=config.instance_type,
                hint="Pick a type with fewer GPUs, fewer num_instances, or a cloud provider",
            )
        if pool is not None:
            allocated = pool.allocate(task_id, needed)
            if allocated is None:
                pending.park(files, spec, config, self._home_key)
                return record_of(spec, None, message="waiting for free GPUs")
            spec.gpus = allocated
        return self._start(files, spec, config, may_fork=True)

    def _start(
        self,
        files: TaskFiles,
        spec: TaskSpec,
        config: TaskConfig,
        *,
        was_pending: bool = False,
        may_fork: bool = False,
    ) -> TaskRecord:
        try:
            children = start_ranks(
                files,
                spec,
                config,
                volumes_dir=self.settings.volumes_dir,
                grace_seconds=self.settings.stop_grace_seconds,
                may_fork=may_fork,
            )
        except OSError as error:
            final = FinalState(status=TaskStatus.FAILED, message=f"could not start: {error}")
            files.write_spec(spec)
            files.write_final(final)
            self._release_gpus(spec)
            return record_of(spec, final)
        with self._lock:
            self._children[spec.task_id] = children
            self._started_specs[spec.task_id] = spec
        files.write_spec(spec)
        if was_pending:
            files.config_path.unlink(missing_ok=True)
            pending.forget(spec, self._home_key)
        return record_of(spec, None)

    def _try_start_pending(self, files: TaskFiles, spec: TaskSpec) -> TaskSpec:
        pool = self._pool()
        config = pending.config_to_start(files, spec, self._home_key)
        if pool is None or config is None:
            return spec
        allocated = pool.allocate(spec.task_id, config.total_gpus)
        if allocated is None:
            return spec
        if not files.claim_start():  # another process is starting (or cancelling) it right now
            return files.read_spec() or spec
        spec = spec.model_copy(deep=True)
        spec.gpus = allocated
        self._start(files, spec, config, was_pending=True)
        return files.read_spec() or spec

    # -- state ---------------------------------------------------------------------------------
    def _files(self, task_id: str) -> TaskFiles:
        if not _TASK_ID.match(task_id or ""):
            raise _not_found(task_id)
        files = TaskFiles(self._tasks_dir, task_id)
        if task_id not in self._started_specs and not files.exists():
            raise _not_found(task_id)
        return files

    def get(self, task_id: str) -> TaskRecord:
        """The task's current state, derived from its files and processes."""
        return self._derive(self._files(task_id))

    def _derive(self, files: TaskFiles, *, allow_start: bool = True) -> TaskRecord:
        snapshot = files.snapshot()
        # A started task's spec never changes again, so the one we wrote is still current.
        spec = self._started_specs.get(files.task_id) or snapshot.spec
        if spec is None:
            raise _not_found(files.task_id)
        if snapshot.final is not None:
            self._forget_children(spec.task_id)
            return record_of(spec, snapshot.final)
        if not spec.processes:
            if allow_start and snapshot.stop is None:
                orphan = pending.orphaned(files, spec, self._home_key)
                if orphan is not None:
                    return record_of(spec, orphan)
                spec = self._try_start_pending(files, spec)
            if not spec.processes:
                return record_of(spec, None, message="waiting for free GPUs")
        children = self._children.get(spec.task_id)
        codes: list[int | None] = []
        signals: list[int | None] = []
        running = False
        launched_at = spec.started_at.timestamp() if spec.started_at else None
        for rank, pid in enumerate(spec.processes):
            child = children[rank] if children else None
            code = snapshot.exit_codes.get(rank)
            killed_by = None
            if child is not None:
                # Our own child: its return code is the command's (the wrapper exits with it).
                returncode = child.poll()
                if returncode is None:
                    running = True
                    continue
                code = returncode if returncode >= 0 else code
                killed_by = -returncode if returncode < 0 else None
            elif code is None and processes.is_alive(pid, launched_at):
                running = True
                continue
            codes.append(code)
            signals.append(killed_by)
        if running:
            if over_time_limit(spec, self.settings.stop_grace_seconds):
                reason = time_limit_message(spec.max_run_time_hours or 0.0)
                return self._stop(files, spec, TaskStatus.FAILED, reason)
            return record_of(spec, None)
        if None in codes:
            # The record may have gained the exit codes since it was read (they are written
            # just before the wrapper exits).
            snapshot = files.snapshot()
            codes = [
                snapshot.exit_codes.get(rank) if code is None else code
                for rank, code in enumerate(codes)
            ]
        final = conclude(spec, codes, signals, snapshot.stop)
        if len(snapshot.exit_codes) == spec.num_instances and snapshot.modified_at:
            final.ended_at = snapshot.modified_at  # when the last rank recorded its exit
        if None in codes:
            # A rank vanished without an exit code: end whatever it left running in its session.
            for session in spec.processes:
                processes.signal_tree(session, signal.SIGKILL)
        if not final.from_exit_codes_only:
            # A plain exit is derived from the exit codes each time; anything else is recorded.
            if final.status is TaskStatus.FAILED and final.exit_code is not None:
                files.append_log(final.message or "")
            files.write_final(final)
        self._release_gpus(spec)
        self._forget_children(spec.task_id)
        return record_of(spec, final)

    def get_many(self, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """Current records of many tasks (unknown ids are left out)."""
        records = {}
        for task_id in task_ids:
            try:
                records[task_id] = self.get(task_id)
            except TaskNotFoundError:
                continue
        return records

    def list_tasks(
        self, *, active_only: bool = False, name_prefix: str | None = None
    ) -> list[TaskRecord]:
        """Every task under ``FLOW_HOME/tasks``, newest first."""
        records = []
        for entry in os.scandir(self._tasks_dir):
            if not entry.name.endswith(EVENTS_SUFFIX):
                continue
            files = TaskFiles(self._tasks_dir, entry.name.removesuffix(EVENTS_SUFFIX))
            try:
                record = self._derive(files)
            except TaskNotFoundError:
                continue
            if active_only and record.status.is_terminal:
                continue
            if name_prefix and not record.name.startswith(name_prefix):
                continue
            records.append(record)
        records.sort(key=lambda record: record.created_at, reverse=True)
        return records

    # -- stopping ------------------------------------------------------------------------------
    def cancel(self, task_id: str) -> TaskRecord:
        """Stop the task's whole process tree (SIGTERM, SIGKILL after the grace period)."""
        files = self._files(task_id)
        record = self._derive(files, allow_start=False)
        if record.status.is_terminal:
            return record
        spec = files.read_spec()
        assert spec is not None
        if not spec.processes and not files.claim_start():
            # Another process is starting this pending task: stop it once it has started.
            deadline = time.monotonic() + 10.0
            while not spec.processes and time.monotonic() < deadline:
                time.sleep(0.02)
                spec = files.read_spec() or spec
        return self._stop(files, spec, TaskStatus.CANCELLED, "cancelled by user")

    def _stop(
        self, files: TaskFiles, spec: TaskSpec, status: TaskStatus, reason: str
    ) -> TaskRecord:
        files.write_stop(StopRequest(status=status, message=reason))
        files.append_log(reason)
        children = self._children.get(spec.task_id, [])
        processes.end_sessions(spec.processes, self.settings.stop_grace_seconds, children)
        final = FinalState(status=status, message=reason)
        files.write_final(final)
        files.config_path.unlink(missing_ok=True)
        pending.forget(spec, self._home_key)
        self._release_gpus(spec)
        self._forget_children(spec.task_id)
        return record_of(spec, final)

    def _release_gpus(self, spec: TaskSpec) -> None:
        if spec.gpus and self._pool() is not None:
            pool = self._pool()
            assert pool is not None
            pool.release(spec.task_id)

    def _forget_children(self, task_id: str) -> None:
        with self._lock:
            children = self._children.pop(task_id, None)
            self._started_specs.pop(task_id, None)
        for child in children or []:
            # Reap what has ended; anything else the subprocess module reaps later, never blocking.
            child.poll()

    def wait_for_change(self, task_id: str, timeout: float) -> None:
        """Block on our own child processes when we have them; otherwise sleep."""
        for child in self._children.get(task_id, []):
            if child.poll() is None:
                processes.wait_for_exit(child, timeout)
                return
        time.sleep(max(0.0, timeout))

    # -- output and shell ----------------------------------------------------------------------
    def logs(self, task_id: str, tail: int | None = None) -> str:
        """The interleaved output of every rank (the last ``tail`` lines when given)."""
        return logs.read_tail(self._files(task_id).log_path, tail)

    def follow_logs(self, task_id: str) -> Iterator[str]:
        """Yield output lines as they are written until the task ends."""
        files = self._files(task_id)
        return logs.follow(files.log_path, lambda: self.get(task_id).status.is_terminal)

    def shell(self, task_id: str, command: str | None = None) -> str:
        """Run ``command`` in the task's working directory and environment variables."""
        spec = self._files(task_id).read_spec()
        assert spec is not None
        return shell_in(spec, command)

    def shell_command(self, task_id: str) -> str | None:
        """A command that opens a shell in the task's working directory."""
        spec = self._files(task_id).read_spec()
        return (
            None if spec is None else f"cd {shlex.quote(spec.working_dir)} && ${{SHELL:-/bin/sh}}"
        )

    # -- volumes -------------------------------------------------------------------------------
    def list_volumes(self) -> list[VolumeInfo]:
        """Every volume under ``FLOW_HOME/volumes``."""
        return volumes.list_all(self.settings.volumes_dir)

    def create_volume(self, name: str, size_gb: float) -> VolumeInfo:
        """Create a volume (the size is recorded, not enforced locally)."""
        return volumes.create(self.settings.volumes_dir, name, size_gb)

    def delete_volume(self, name: str) -> None:
        """Delete a volume and its data."""
        volumes.delete(self.settings.volumes_dir, name)


def _not_found(task_id: str) -> TaskNotFoundError:
    return TaskNotFoundError.of(
        task_id,
        f"No local task with id {task_id!r}",
        hint="`flow status` lists the tasks (check FLOW_HOME when they were started elsewhere)",
    )
