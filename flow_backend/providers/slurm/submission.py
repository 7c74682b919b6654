"""Turning TaskConfigs into SLURM submissions: task folders, ``#SBATCH`` options, sbatch's answer."""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = [
    "JobShape",
    "Placement",
    "PreparedTask",
    "array_shape",
    "parse_job_id",
    "prepare_task",
    "sbatch_error",
    "shape_of",
    "unused_note",
    "volume_folders",
]


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


def array_shape(configs: Sequence[TaskConfig], max_parallel: int | None) -> JobShape:
    """The shape all of ``configs`` share (they go in as one array).

    Raises:
        ValidationError: A task differs from the first in shape, or ``max_parallel`` < 1.
    """
    shape = shape_of(configs[0])
    for index, config in enumerate(configs[1:], start=1):
        if shape_of(config) != shape:
            raise ValidationError(
                f"task {index} ({config.name!r}) of an array differs from task 0 in instance "
                "type, num_instances, max_run_time_hours or secret environment values",
                field="configs",
                value=config.name,
                hint="Submit tasks with different resources separately (submit)",
            )
    if max_parallel is not None and max_parallel < 1:
        raise ValidationError(
            f"max_parallel must be at least 1, got {max_parallel}",
            field="max_parallel",
            value=max_parallel,
            hint="Give the number of array elements that may run at once",
        )
    return shape


@dataclass(frozen=True)
class Placement:
    """What one ``sbatch`` of tasks of one shape asks besides it.

    Attributes:
        instance_type: The tasks' instance type (its name in our catalog).
        resources: Its ``sbatch`` options (the instance-type mapping).
        limit: Elements of the array running at once (``%limit``); ``None``: no limit.
        dependency: ``--dependency`` (``afterany:<job id>``); ``None``: none.
    """

    instance_type: str
    resources: list[str]
    limit: int | None = None
    dependency: str | None = None


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
    config: TaskConfig,
    task_id: str,
    task_dir: str,
    code_dir: str | None,
    workdir: str | None,
    volumes_dir: str | None = None,
) -> PreparedTask:
    """``command.sh`` and ``run.sh`` of a task (its plain environment in ``run.sh``); it runs in
    ``workdir``, else in ``code_dir`` (``working_dir``, if relative, inside it). A volume is the
    folder ``<volumes_dir>/<name>`` (made by the job if new), in ``FLOW_VOLUME_<NAME>``.

    Raises:
        ValidationError: The task asks for volumes and ``slurm_volumes_dir`` is not set.
    """
    plain, _ = split_secret_env(config.env)
    workdir = workdir or _workdir(config, code_dir or ".")
    env = {"FLOW_INSTANCE_TYPE": config.instance.name, **plain}
    run = run_script(
        task_dir,
        task_id=task_id,
        name=config.name,
        workdir=workdir,
        env=env,
        volumes=volume_folders(config, volumes_dir),
    )
    files = {
        f"{task_dir}/{COMMAND_FILE}": (config.command_string + "\n", 0o600),
        f"{task_dir}/{RUN_FILE}": (run, 0o700),
    }
    return PreparedTask(task_id=task_id, task_dir=task_dir, workdir=workdir, files=files)


def volume_folders(config: TaskConfig, volumes_dir: str | None) -> list[tuple[str, str]]:
    """``(FLOW_VOLUME_<NAME>, <volumes_dir>/<name>)`` of each of the task's volumes.

    Raises:
        ValidationError: The task asks for volumes and ``slurm_volumes_dir`` is not set.
    """
    if not config.volumes:
        return []
    if not volumes_dir:
        name = config.volumes[0].name
        raise ValidationError(
            f"volume {name!r} needs the setting slurm_volumes_dir: on SLURM a volume is the folder "
            "<slurm_volumes_dir>/<name> on the cluster's shared filesystem, and it is not set",
            field="slurm_volumes_dir",
            value=None,
            hint="Set slurm_volumes_dir (FLOW_SLURM_VOLUMES_DIR) to a folder every node sees, "
            "e.g. /scratch/$USER/flow-volumes",
        )
    base = volumes_dir.rstrip("/")
    return [(volume.env_var, f"{base}/{volume.name}") for volume in config.volumes]


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


def unused_note(config: TaskConfig) -> str | None:
    """What of the task's config SLURM does not do, for its record's message."""
    notes = []
    if config.image:
        notes.append(f"image {config.image!r} is not used: SLURM jobs run the cluster's own tools")
    for volume in config.volumes:
        if volume.mount_path:
            notes.append(
                f"volume {volume.name!r} is in ${volume.env_var}, not at {volume.mount_path} "
                "(SLURM jobs get no mounts)"
            )
    return "; ".join(notes) or None
