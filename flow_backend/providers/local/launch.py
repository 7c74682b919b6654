"""Starting the processes of one local task: environment, volumes, notes, one process per rank."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flow_backend.errors import ValidationError
from flow_backend.providers.local import processes, volumes
from flow_backend.providers.local.state import TaskFiles, TaskSpec, utc_now
from flow_backend.task_config import TaskConfig

__all__ = ["resolve_working_dir", "start_ranks"]

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
) -> list[subprocess.Popen[bytes]]:
    """Start ``num_instances`` processes (ranks) and record them in ``spec`` (written by the caller).

    If a rank cannot start, the ranks already started are killed and the error is raised.
    """
    env = _task_env(config, spec, volumes_dir)
    for note in spec.log_notes:
        files.append_log(note)
    limit = None if spec.max_run_time_hours is None else spec.max_run_time_hours * 3600.0
    spec.timeout_in_wrapper = limit is not None and processes.has_timeout_binary()
    per_rank = len(spec.gpus) // spec.num_instances if spec.gpus else 0
    started: list[subprocess.Popen[bytes]] = []
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
