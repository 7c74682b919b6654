"""Starting the processes of one local task: environment, volumes, notes, one process per rank."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flow_backend.errors import ValidationError
from flow_backend.providers.local import processes, volumes
from flow_backend.providers.local.forked import ForkedTask, fork_argv, start_forked
from flow_backend.providers.local.state import TaskFiles, TaskSpec, utc_now
from flow_backend.task_config import TaskConfig, volume_env_var

__all__ = ["resolve_working_dir", "shell_in", "start_ranks"]

MAIN_IP = "127.0.0.1"


def resolve_working_dir(config: TaskConfig) -> str:
    """The folder the task starts in: ``working_dir``, else ``code_root``, else the current one."""
    chosen = config.working_dir or config.code_root or os.getcwd()
    folder = os.path.abspath(os.path.expanduser(chosen))
    if not os.path.isdir(folder):
        field = "working_dir" if config.working_dir else "code_root"
        raise ValidationError(
            f"{field}={chosen!r} is not an existing directory on this machine",
            field=field,
            value=chosen,
            hint="Create it or give an existing directory",
        )
    return folder


def _task_env(config: TaskConfig, spec: TaskSpec, volumes_dir: Path) -> dict[str, str]:
    """The variables a task gets on top of the inherited environment."""
    env = dict(config.env)
    env.update(
        FLOW_TASK_ID=spec.task_id,
        FLOW_TASK_NAME=spec.name,
        FLOW_NUM_NODES=str(spec.num_instances),
        FLOW_MAIN_IP=MAIN_IP,
        FLOW_INSTANCE_TYPE=spec.instance_type,
    )
    for volume in config.volumes:
        folder, note = volumes.attach(volumes_dir, volume)
        env[volume.env_var] = str(folder)
        spec.volumes[volume.name] = str(folder)
        if note:
            spec.notes.append(note)
            spec.log_notes.append(note)
    return env


def start_ranks(
    files: TaskFiles,
    spec: TaskSpec,
    config: TaskConfig,
    *,
    volumes_dir: Path,
    grace_seconds: float,
    may_fork: bool = False,
) -> list[subprocess.Popen[bytes] | ForkedTask]:
    """Start ``num_instances`` processes (ranks) and record them in ``spec`` (written by the caller).

    ``may_fork``: a ``TaskConfig.fork`` task submitted by this process starts as a fork of it where
    it can (see ``forked``). If a rank cannot start, the ranks already started are killed and the
    error is raised.
    """
    env = _task_env(config, spec, volumes_dir)
    for note in spec.log_notes:
        files.append_log(note)
    limit = None if spec.max_run_time_hours is None else spec.max_run_time_hours * 3600.0
    forkable = _forkable(config, spec) if may_fork else None
    if forkable is not None:
        spec.started_at = utc_now()
        module, args = forkable
        child = start_forked(
            module,
            args,
            record_file=files.events_path,
            log_file=files.log_path,
            rank=0,
            cwd=spec.working_dir,
            env=dict(env, FLOW_NODE_RANK="0"),
        )
        spec.processes = [child.pid]
        return [child]
    spec.timeout_in_wrapper = limit is not None and processes.has_timeout_binary()
    per_rank = len(spec.gpus) // spec.num_instances if spec.gpus else 0
    started: list[subprocess.Popen[bytes] | ForkedTask] = []
    spec.started_at = utc_now()
    try:
        for rank in range(spec.num_instances):
            rank_env = dict(env, FLOW_NODE_RANK=str(rank))
            if per_rank:
                rank_env["CUDA_VISIBLE_DEVICES"] = ",".join(
                    spec.gpus[rank * per_rank : (rank + 1) * per_rank]
                )
            started.append(
                processes.launch(
                    spec.command,
                    record_file=files.events_path,
                    log_file=files.log_path,
                    rank=rank,
                    cwd=spec.working_dir,
                    env=rank_env,
                    time_limit_seconds=limit,
                    grace_seconds=grace_seconds,
                )
            )
    except OSError:
        for popen in started:
            processes.signal_tree(popen.pid, processes.signal.SIGKILL)
            popen.wait()
        raise
    spec.processes = [popen.pid for popen in started]
    return started


def _forkable(config: TaskConfig, spec: TaskSpec) -> tuple[str, list[str]] | None:
    """``(module, args)`` when the task can start as a fork of this process (see ``forked``)."""
    if not config.fork or isinstance(config.command, str) or spec.num_instances != 1:
        return None
    if spec.gpus or spec.max_run_time_hours is not None:
        return None
    return fork_argv(config.command)


def shell_in(spec: TaskSpec, command: str | None) -> str:
    """Run ``command`` (an interactive shell when None) in the working directory of the task of
    ``spec``, with its task and volume variables; its output (stdout and stderr)."""
    env = dict(os.environ, FLOW_TASK_ID=spec.task_id, FLOW_TASK_NAME=spec.name)
    env.update({volume_env_var(name): path for name, path in spec.volumes.items()})
    if command is None:
        subprocess.call([os.environ.get("SHELL", "/bin/sh")], cwd=spec.working_dir, env=env)
        return ""
    result = subprocess.run(
        command,
        shell=True,
        cwd=spec.working_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return result.stdout
