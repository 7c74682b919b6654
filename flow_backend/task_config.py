"""What to run and on what: :class:`TaskConfig` and :class:`VolumeSpec`.

Construction validates everything a careful user expects and raises
:class:`flow_backend.errors.ValidationError` (or :class:`ResourceNotFoundError` for an unknown instance
type) with one message naming the field, the value and the fix.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Self

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flow_backend._pydantic_errors import to_flow_error
from flow_backend._yaml_files import read_yaml_mapping
from flow_backend.errors import ValidationError
from flow_backend.instance_types import InstanceType, cheapest_with_memory, parse_instance_type

__all__ = ["MAX_RUN_TIME_HOURS", "TaskConfig", "VolumeSpec", "volume_env_var"]

MAX_RUN_TIME_HOURS = 168.0
_VOLUME_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def volume_env_var(name: str) -> str:
    """The variable holding a volume's path in a task: ``training-data`` → ``FLOW_VOLUME_TRAINING_DATA``."""
    return "FLOW_VOLUME_" + name.upper().replace("-", "_")


class _FlowModel(BaseModel):
    """A model whose construction errors are flow_backend errors, not pydantic's."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as error:
            raise to_flow_error(error, where=type(self).__name__) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate ``obj`` like pydantic, raising a flow_backend error on bad input."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except pydantic.ValidationError as error:
            raise to_flow_error(error, where=cls.__name__) from None


class VolumeSpec(_FlowModel):
    """A persistent volume a task uses.

    Attributes:
        name: Lowercase letters, digits and inner dashes, e.g. ``training-data``.
        size_gb: Size to create it with (providers that size volumes); ``None`` reuses/uses default.
        mount_path: Absolute path where the task sees it; default ``/volumes/<name>``.
        interface: How a cloud provider creates it when new: ``block`` (default; a disk that
            attaches to one instance at a time) or ``file`` (a share several instances mount).
            An existing volume keeps its own; local and ssh volumes are plain folders.
    """

    name: str
    size_gb: float | None = Field(default=None, gt=0)
    mount_path: str | None = None
    interface: Literal["block", "file"] = "block"

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _VOLUME_NAME.match(name) or len(name) > 63:
            raise ValueError(
                "volume names use 2-63 lowercase letters, digits and dashes, starting and ending "
                "with a letter or digit (e.g. 'training-data')"
            )
        return name

    @field_validator("mount_path")
    @classmethod
    def _check_mount_path(cls, path: str | None) -> str | None:
        if path is None:
            return None
        if not PurePosixPath(path).is_absolute():
            raise ValueError(f"mount paths must be absolute, e.g. '/{path.lstrip('./')}'")
        if ".." in PurePosixPath(path).parts:
            raise ValueError("mount paths must not contain '..'")
        normalized = str(PurePosixPath(path))
        if normalized == "/":
            raise ValueError("a volume cannot be mounted at '/'")
        return normalized

    @property
    def resolved_mount_path(self) -> str:
        """Where the task sees the volume."""
        return self.mount_path or f"/volumes/{self.name}"

    @property
    def env_var(self) -> str:
        """The environment variable holding the volume's path in the task: ``FLOW_VOLUME_<NAME>``."""
        return volume_env_var(self.name)


class TaskConfig(_FlowModel):
    """Everything needed to start a task.

    Attributes:
        name: Human name; a unique ``-xxxxxx`` suffix is appended unless ``unique_name=False``.
        command: A shell string, or an argv list run without a shell's word splitting.
        instance_type: Short name or full spec (see ``flow instance-types``); default ``cpu``.
        min_gpu_memory_gb: Instead of ``instance_type``: pick the cheapest type with this much per GPU.
        image: Container image (cloud providers); the local provider runs the host's Python.
        env: Extra environment variables for the task.
        working_dir: Directory the command starts in (local: default the current directory).
        volumes: Persistent volumes to attach.
        max_price_per_hour: Refuse instance types costing more per hour.
        max_run_time_hours: Stop the task (it ends ``failed``) after this long; in (0, 168].
        num_instances: Nodes; each gets ``FLOW_NODE_RANK`` 0..N-1.
        region: Cloud region (providers with regions).
        ports: Ports to expose, 1024..65535.
        upload_code: Copy ``code_root`` to the instance (remote providers).
        code_root: The directory to upload; default the current directory.
        unique_name: Append a random suffix to ``name`` (default ``True``).
        fork: Local provider: a command ``[sys.executable, "-m", module, *args]`` may start as a
            fork of the submitting process (its imports already done: milliseconds instead of a
            new interpreter's start) on Linux, with one instance, no GPUs and no time limit; its
            ``env`` should then hold no variable that acts only when an interpreter or library
            starts (``PYTHONPATH``, ``OMP_NUM_THREADS``...). Other providers ignore it.
    """

    name: str = "flow-task"
    command: str | list[str]
    instance_type: str | None = None
    min_gpu_memory_gb: float | None = None
    image: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    volumes: list[VolumeSpec] = Field(default_factory=list)
    max_price_per_hour: float | None = None
    max_run_time_hours: float | None = None
    num_instances: int = 1
    region: str | None = None
    ports: list[int] = Field(default_factory=list)
    upload_code: bool = True
    code_root: str | None = None
    unique_name: bool = True
    fork: bool = False

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _TASK_NAME.match(name) or len(name) > 100:
            raise ValueError(
                "task names use letters, digits, '.', '_' and '-', start with a letter or digit, "
                "and are at most 100 characters"
            )
        return name

    @field_validator("command")
    @classmethod
    def _check_command(cls, command: str | list[str]) -> str | list[str]:
        if (isinstance(command, str) and not command.strip()) or (
            isinstance(command, list) and not command
        ):
            raise ValueError("the command is empty; give e.g. 'python train.py'")
        return command

    @field_validator("instance_type")
    @classmethod
    def _check_instance_type(cls, name: str | None) -> str | None:
        if name is not None:
            parse_instance_type(name)  # raises ResourceNotFoundError with close names
        return name

    @field_validator("env", mode="before")
    @classmethod
    def _stringify_env(cls, env: Any) -> Any:
        if isinstance(env, dict):
            return {
                key: value if isinstance(value, str) else str(value) for key, value in env.items()
            }
        return env

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not _ENV_KEY.match(key):
                raise ValueError(
                    f"environment variable name {key!r} is not valid: use letters, digits and "
                    "'_', not starting with a digit"
                )
        return env

    @field_validator("max_price_per_hour")
    @classmethod
    def _check_price(cls, price: float | None) -> float | None:
        if price is not None and price <= 0:
            raise ValueError("max_price_per_hour must be greater than 0 dollars")
        return price

    @field_validator("max_run_time_hours")
    @classmethod
    def _check_run_time(cls, hours: float | None) -> float | None:
        if hours is not None and not 0 < hours <= MAX_RUN_TIME_HOURS:
            raise ValueError(
                f"max_run_time_hours must be in (0, {MAX_RUN_TIME_HOURS:g}] hours; "
                "leave it unset for no limit"
            )
        return hours

    @field_validator("num_instances")
    @classmethod
    def _check_num_instances(cls, count: int) -> int:
        if not 1 <= count <= 100:
            raise ValueError("num_instances must be between 1 and 100")
        return count

    @field_validator("ports")
    @classmethod
    def _check_ports(cls, ports: list[int]) -> list[int]:
        for port in ports:
            if not 1024 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1024..65535")
        return ports

    @field_validator("volumes")
    @classmethod
    def _check_volumes(cls, volumes: list[VolumeSpec]) -> list[VolumeSpec]:
        names = [volume.name for volume in volumes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"volume {duplicates[0]!r} is listed twice")
        paths = [PurePosixPath(volume.resolved_mount_path) for volume in volumes]
        for i, outer in enumerate(paths):
            for j, inner in enumerate(paths):
                if i != j and (inner == outer or outer in inner.parents):
                    raise ValueError(
                        f"mount paths must not be nested or equal: {str(inner)!r} is inside "
                        f"{str(outer)!r}; mount them side by side"
                    )
        return volumes

    @model_validator(mode="after")
    def _check_resources(self) -> TaskConfig:
        if self.instance_type is not None and self.min_gpu_memory_gb is not None:
            raise ValidationError(
                "instance_type and min_gpu_memory_gb are mutually exclusive (got "
                f"instance_type={self.instance_type!r}, min_gpu_memory_gb={self.min_gpu_memory_gb})",
                field="min_gpu_memory_gb",
                value=self.min_gpu_memory_gb,
                hint="Give one of them: a type by name, or the memory per GPU you need",
            )
        chosen = self.instance  # raises for a min_gpu_memory_gb larger than any GPU
        if self.max_price_per_hour is not None and chosen.price_per_hour > self.max_price_per_hour:
            raise ValidationError(
                f"max_price_per_hour={self.max_price_per_hour} is below the price of instance type "
                f"{chosen.name!r} (${chosen.price_per_hour:.2f}/h)",
                field="max_price_per_hour",
                value=self.max_price_per_hour,
                hint="Raise max_price_per_hour or pick a cheaper instance_type",
            )
        return self

    @model_validator(mode="after")
    def _add_unique_suffix(self) -> TaskConfig:
        if self.unique_name:
            suffix = secrets.token_hex(3)
            self.name = f"{self.name}-{suffix}"
            self.unique_name = False
        return self

    # -- derived -------------------------------------------------------------------------------
    @property
    def instance(self) -> InstanceType:
        """The resolved instance type (``min_gpu_memory_gb`` → cheapest fitting; nothing → cpu)."""
        if self.instance_type is not None:
            return parse_instance_type(self.instance_type)
        if self.min_gpu_memory_gb is not None:
            return cheapest_with_memory(self.min_gpu_memory_gb)
        return parse_instance_type("cpu")

    @property
    def total_gpus(self) -> int:
        """GPUs the whole task needs: the instance type's GPUs times ``num_instances``."""
        return self.instance.gpu_count * self.num_instances

    @property
    def command_string(self) -> str:
        """The command as one shell string (argv lists are quoted)."""
        if isinstance(self.command, str):
            return self.command
        import shlex

        return shlex.join(self.command)

    # -- yaml ----------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskConfig:
        """Load a config from a YAML file (keys are the field names).

        Raises:
            ValidationError: The file is missing, not YAML, not a mapping, or has bad values.
        """
        source = Path(path)
        data = read_yaml_mapping(
            source,
            label="Task file",
            field="path",
            holds="TaskConfig fields",
            read_hint="Check the path",
            syntax_hint="Fix the YAML syntax",
            mapping_hint="Write e.g. 'command: python train.py' on its own line",
        )
        if data is None:
            raise ValidationError(
                f"Task file {str(source)!r} is empty",
                field="path",
                value=str(source),
                hint="Write e.g. 'command: python train.py' on its own line",
            )
        try:
            return cls.__pydantic_validator__.validate_python(data)
        except pydantic.ValidationError as error:
            raise to_flow_error(error, where=f"task file {str(source)!r}") from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Dump to YAML (the name is kept as is: loading it back does not add another suffix)."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["name"] = self.name
        data["unique_name"] = False
        text = yaml.safe_dump(data, sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text
