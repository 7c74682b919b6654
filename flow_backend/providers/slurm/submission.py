"""Turning TaskConfigs into SLURM submissions: task folders, ``#SBATCH`` options, sbatch's answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from flow_backend.errors import FlowError, ProviderError, ValidationError
from flow_backend.providers.slurm.login import CommandResult
from flow_backend.providers.slurm.script import (
    COMMAND_FILE,
    RUN_FILE,
    run_script,
    time_limit,
)
from flow_backend.secret_env import split_secret_env
from flow_backend.task_config import TaskConfig

__all__ = ["JobShape", "PreparedTask", "parse_job_id", "prepare_task", "sbatch_error", "shape_of"]


@dataclass(frozen=True)
class JobShape:
    """What the tasks of one array must share: resources, nodes, time limit, secret values."""

    instance_type: str
    num_instances: int
    time_limit: str | None
    secret_env: tuple[tuple[str, str], ...]


def shape_of(config: TaskConfig) -> JobShape:
    """The shared part of a task's job."""
    _, secret = split_secret_env(config.env)
    hours = config.max_run_time_hours
    return JobShape(
        instance_type=config.instance.name,
        num_instances=config.num_instances,
        time_limit=time_limit(hours) if hours is not None else None,
        secret_env=tuple(sorted(secret.items())),
    )


@dataclass(frozen=True)
class PreparedTask:
    """The files of one task, ready to write on the login node."""

    task_id: str
    task_dir: str
    workdir: str
    files: dict[str, tuple[str, int]]


def _workdir(config: TaskConfig, code_dir: str) -> str:
    if config.working_dir and PurePosixPath(config.working_dir).is_absolute():
        return config.working_dir
    return str(PurePosixPath(code_dir) / (config.working_dir or "."))


def prepare_task(
    config: TaskConfig, task_id: str, task_dir: str, code_dir: str | None, workdir: str | None
) -> PreparedTask:
    """``command.sh`` and ``run.sh`` of a task (its plain environment in ``run.sh``); it runs in
    ``workdir``, else in ``code_dir`` (``working_dir``, if relative, inside it).

    Raises:
        ValidationError: The task asks for volumes (the slurm provider has none).
    """
    if config.volumes:
        raise ValidationError(
            f"the slurm provider has no volumes (asked for {config.volumes[0].name!r})",
            field="volumes",
            value=[volume.name for volume in config.volumes],
            hint="Use a folder on the cluster's shared filesystem (pass its path in env)",
        )
    plain, _ = split_secret_env(config.env)
    workdir = workdir or _workdir(config, code_dir or ".")
    env = {"FLOW_INSTANCE_TYPE": config.instance.name, **plain}
    run = run_script(task_dir, task_id=task_id, name=config.name, workdir=workdir, env=env)
    files = {
        f"{task_dir}/{COMMAND_FILE}": (config.command_string + "\n", 0o600),
        f"{task_dir}/{RUN_FILE}": (run, 0o700),
    }
    return PreparedTask(task_id=task_id, task_dir=task_dir, workdir=workdir, files=files)


def parse_job_id(result: CommandResult) -> str:
    """The job id of ``sbatch --parsable``'s answer (``123`` or ``123;cluster``)."""
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise ProviderError(
            f"sbatch answered {result.stdout.strip()!r} instead of a job id",
            hint="Check the SLURM client tools (`sbatch --version`)",
        )
    return job_id


def sbatch_error(result: CommandResult, *, partition: str | None, instance_type: str) -> FlowError:
    """One clear error for a refused submission, naming the setting SLURM objected to."""
    text = (
        " ".join(
            line.removeprefix("sbatch: error: ").strip()
            for line in result.stderr.splitlines()
            if line.strip()
        )
        or f"exit code {result.exit_code}"
    )
    lowered = text.lower()
    if "invalid partition" in lowered:
        return ValidationError(
            f"SLURM has no partition {partition!r}: {text}",
            field="slurm_partition",
            value=partition,
            hint="`sinfo -s` lists the partitions; set slurm_partition (FLOW_SLURM_PARTITION)",
        )
    if "gres" in lowered or "node configuration is not available" in lowered:
        return ValidationError(
            f"SLURM cannot give instance type {instance_type!r} what it asks: {text}",
            field="instance_type",
            value=instance_type,
            hint="Map the type to resources this cluster has in slurm_instance_types",
        )
    if "account" in lowered or "qos" in lowered:
        return ValidationError(
            f"SLURM refused the account or QOS: {text}",
            field="slurm_account",
            hint="Check slurm_account and slurm_qos (`sacctmgr show assoc user=$USER`)",
        )
    return ValidationError(
        f"sbatch refused the job: {text}",
        field="slurm_sbatch_lines",
        hint="Check the slurm_* settings and slurm_instance_types against the cluster",
    )
