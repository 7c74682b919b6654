"""Settings: arguments > environment > ``~/.flow/config.yaml`` > defaults.

The config file path is ``$FLOW_CONFIG_PATH`` when set, else ``~/.flow/config.yaml``. Its keys are the
field names of :class:`FlowSettings`; the short forms ``api_key``, ``project``, ``region``, ``api_url``
and a nested ``mithril:`` mapping are accepted for the Mithril fields (the Flow SDK's layout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from flow_backend._pydantic_errors import to_flow_error
from flow_backend._yaml_files import read_yaml_mapping
from flow_backend.errors import ValidationError
from flow_backend.providers import PROVIDERS

__all__ = [
    "DEFAULT_MITHRIL_REMOTE_ROOT",
    "ENV_VARS",
    "PROVIDER_NAMES",
    "FlowSettings",
    "config_path",
    "load_settings",
]

PROVIDER_NAMES = tuple(PROVIDERS)
#: Folder on Mithril instances for flow's files (``/var/tmp``: the startup script runs as root
#: while SSH logs in as another user).
DEFAULT_MITHRIL_REMOTE_ROOT = "/var/tmp/flow-mithril"

#: Environment variable of each setting.
ENV_VARS: dict[str, str] = {
    "provider": "FLOW_PROVIDER",
    "home": "FLOW_HOME",
    "mithril_api_key": "MITHRIL_API_KEY",
    "mithril_project": "MITHRIL_PROJECT",
    "mithril_region": "MITHRIL_REGION",
    "mithril_api_url": "MITHRIL_API_URL",
    "mithril_ssh_user": "MITHRIL_SSH_USER",
    "mithril_remote_root": "FLOW_MITHRIL_REMOTE_ROOT",
    "mithril_boot_timeout": "FLOW_MITHRIL_BOOT_TIMEOUT",
    "ssh_key_path": "FLOW_SSH_KEY_PATH",
    "ssh_hosts": "FLOW_SSH_HOSTS",
    "ssh_remote_dir": "FLOW_SSH_REMOTE_DIR",
    "poll_interval": "FLOW_POLL_INTERVAL",
    "stop_grace_seconds": "FLOW_STOP_GRACE_SECONDS",
    "local_gpus": "FLOW_LOCAL_GPUS",
    "slurm_partition": "FLOW_SLURM_PARTITION",
    "slurm_account": "FLOW_SLURM_ACCOUNT",
    "slurm_qos": "FLOW_SLURM_QOS",
    "slurm_sbatch_lines": "FLOW_SLURM_SBATCH_LINES",
    "slurm_instance_types": "FLOW_SLURM_INSTANCE_TYPES",
    "slurm_dir": "FLOW_SLURM_DIR",
    "slurm_volumes_dir": "FLOW_SLURM_VOLUMES_DIR",
    "slurm_conf": "FLOW_SLURM_CONF",
    "slurm_login": "FLOW_SLURM_LOGIN",
    "slurm_max_array_size": "FLOW_SLURM_MAX_ARRAY_SIZE",
}

_FILE_ALIASES = {
    "api_key": "mithril_api_key",
    "project": "mithril_project",
    "region": "mithril_region",
    "api_url": "mithril_api_url",
}
_SECRET_FIELDS = frozenset({"mithril_api_key"})


class FlowSettings(BaseModel):
    """Resolved settings of one :class:`flow_backend.Flow` client.

    Attributes:
        provider: ``local`` (default), ``mithril``, ``ssh`` or ``slurm``.
        home: Where local state lives (tasks, volumes); default ``~/.flow``.
        mithril_api_key: The Mithril API key (never shown in reprs or logs).
        mithril_project: Mithril project name or id.
        mithril_region: Mithril region, e.g. ``us-central1-a``.
        mithril_api_url: Base URL of the Mithril API.
        mithril_ssh_user: User for SSH to Mithril instances whose address names none.
        mithril_remote_root: Absolute folder on Mithril instances for flow's files (task and
            node folders); tests point it at a temporary folder.
        mithril_boot_timeout: Seconds an allocated instance may take to boot and answer over SSH
            (the SDK allows 5 min for an address and 10 for sshd); a task whose instance does not
            is cancelled with a message saying so, never polled forever.
        ssh_key_path: Private key for SSH (mithril instances, ssh hosts).
        ssh_hosts: ``user@host[:port]`` destinations of the ssh provider.
        ssh_remote_dir: Folder on ssh hosts for uploaded code and task folders (``~`` = remote home).
        poll_interval: Longest pause between two status checks while waiting, in seconds.
        stop_grace_seconds: Time between SIGTERM and SIGKILL when stopping a local task.
        local_gpus: GPU indices the local provider may hand out, e.g. ``"0,1"``; ``None`` asks
            ``nvidia-smi``; ``""`` means none.
        slurm_partition: SLURM partition of the slurm provider's jobs (``None``: the cluster's
            default partition).
        slurm_account: SLURM account to charge (``--account``).
        slurm_qos: SLURM quality of service (``--qos``).
        slurm_sbatch_lines: Extra ``sbatch`` options, one per line of the batch script (e.g.
            ``--constraint=v100``); from the environment, separated by ``;``.
        slurm_instance_types: Our instance types → ``sbatch`` options (``a100: --gres=gpu:a100:1
            --cpus-per-task=8 --mem=64G``); ``None``: GPUs by count (``--gres=gpu:N``). From the
            environment as JSON or ``type=options;type=options``.
        slurm_dir: Folder of the slurm provider's task folders (``tasks/``: scripts, logs, exit
            codes) and code snapshots (``code/``) on the login node; the cluster's nodes must see
            it. Default ``FLOW_HOME/slurm`` here, ``~/.flow-slurm`` on a ``slurm_login`` host.
        slurm_volumes_dir: Folder on the cluster's shared filesystem where the slurm provider
            keeps volumes (``<slurm_volumes_dir>/<name>``, in ``FLOW_VOLUME_<NAME>``); ``None``:
            a task with volumes is refused.
        slurm_login: ``user@host[:port]`` of a SLURM login node to submit on over SSH (with
            ``ssh_key_path``); ``None``: this machine.
        slurm_conf: ``slurm.conf`` the SLURM commands use (``None``: the cluster's usual one).
        slurm_max_array_size: The most tasks one SLURM job array holds (``None``: the cluster's
            ``MaxArraySize``, from ``scontrol show config``); a sweep of more goes in as a few
            arrays.
    """

    model_config = ConfigDict(extra="forbid")

    provider: str = "local"
    home: Path = Field(default_factory=lambda: Path("~/.flow").expanduser())
    mithril_api_key: SecretStr | None = None
    mithril_project: str | None = None
    mithril_region: str | None = None
    mithril_api_url: str = "https://api.mithril.ai"
    mithril_ssh_user: str = "ubuntu"
    mithril_remote_root: str = DEFAULT_MITHRIL_REMOTE_ROOT
    mithril_boot_timeout: float = Field(default=1200.0, gt=0)
    ssh_key_path: Path | None = None
    ssh_hosts: list[str] = Field(default_factory=list)
    ssh_remote_dir: str = "~/.flow-remote"
    poll_interval: float = Field(default=1.0, gt=0)
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    local_gpus: str | None = None
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_qos: str | None = None
    slurm_sbatch_lines: list[str] = Field(default_factory=list)
    slurm_instance_types: dict[str, str] | None = None
    slurm_dir: Path | None = None
    slurm_volumes_dir: Path | None = None
    slurm_conf: Path | None = None
    slurm_login: str | None = None
    slurm_max_array_size: int | None = Field(default=None, ge=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as error:
            raise to_flow_error(error, where="FlowSettings", secret_fields=_SECRET_FIELDS) from None

    @field_validator("provider")
    @classmethod
    def _check_provider(cls, name: str) -> str:
        name = name.strip().lower()
        if name not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider; valid providers are {', '.join(PROVIDER_NAMES)}")
        return name

    @field_validator("mithril_ssh_user")
    @classmethod
    def _check_ssh_user(cls, user: str) -> str:
        user = user.strip()
        if not user or any(char in user for char in "@: /"):
            raise ValueError("give a user name without '@', ':', '/' or spaces, e.g. 'ubuntu'")
        return user

    @field_validator("mithril_remote_root")
    @classmethod
    def _check_remote_root(cls, root: str) -> str:
        root = root.strip()
        if not root.startswith("/") or root.rstrip("/") == "":
            raise ValueError("give an absolute folder other than '/', e.g. '/var/tmp/flow-mithril'")
        return root.rstrip("/")

    @field_validator("slurm_sbatch_lines", mode="before")
    @classmethod
    def _split_sbatch_lines(cls, lines: Any) -> Any:
        if isinstance(lines, str):
            return [line.strip() for line in lines.replace("\n", ";").split(";") if line.strip()]
        return lines

    @field_validator("slurm_instance_types", mode="before")
    @classmethod
    def _parse_type_map(cls, mapping: Any) -> Any:
        if not isinstance(mapping, str):
            return mapping
        if mapping.strip().startswith("{"):
            return json.loads(mapping)
        pairs = [part.partition("=") for part in mapping.split(";") if part.strip()]
        bad = [name for name, sep, _ in pairs if not sep]
        if bad:
            raise ValueError(
                f"{bad[0].strip()!r} has no '='; write 'type=sbatch options;...', e.g. "
                "'a100=--gres=gpu:a100:1 --cpus-per-task=8;cpu=--cpus-per-task=1'"
            )
        return {name.strip(): options.strip() for name, _, options in pairs}

    @field_validator("home", "ssh_key_path", "slurm_dir", "slurm_volumes_dir", "slurm_conf")
    @classmethod
    def _expand(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()

    @field_validator("ssh_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, hosts: Any) -> Any:
        if isinstance(hosts, str):
            return [host.strip() for host in hosts.split(",") if host.strip()]
        return hosts

    @field_validator("local_gpus", mode="before")
    @classmethod
    def _gpus_to_text(cls, gpus: Any) -> Any:
        if isinstance(gpus, list | tuple):
            return ",".join(str(gpu) for gpu in gpus)
        if isinstance(gpus, int):
            return str(gpus)
        return gpus

    @field_validator("local_gpus")
    @classmethod
    def _check_gpus(cls, gpus: str | None) -> str | None:
        if gpus is not None and gpus.strip():
            for part in gpus.split(","):
                if not part.strip().isdigit():
                    raise ValueError("give GPU indices separated by commas, e.g. '0,1'")
        return gpus

    @property
    def local_gpu_ids(self) -> list[str] | None:
        """The configured GPU indices, or ``None`` when they are to be detected."""
        if self.local_gpus is None:
            return None
        return [part.strip() for part in self.local_gpus.split(",") if part.strip()]

    @property
    def tasks_dir(self) -> Path:
        """Where the local provider keeps one folder per task."""
        return self.home / "tasks"

    @property
    def volumes_dir(self) -> Path:
        """Where the local provider keeps volumes."""
        return self.home / "volumes"


def config_path() -> Path:
    """The config file in effect: ``$FLOW_CONFIG_PATH`` or ``~/.flow/config.yaml``."""
    override = os.environ.get("FLOW_CONFIG_PATH")
    return Path(override).expanduser() if override else Path("~/.flow/config.yaml").expanduser()


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = read_yaml_mapping(
        path,
        label="Config file",
        field="config_file",
        holds="settings",
        read_hint="Check its permissions, or point FLOW_CONFIG_PATH at another file",
        syntax_hint="Fix its syntax, or point FLOW_CONFIG_PATH at another file",
        mapping_hint="Write one 'key: value' per line, e.g. 'provider: local'",
    )
    if data is None:
        return {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "mithril" and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat[_FILE_ALIASES.get(str(sub_key), f"mithril_{sub_key}")] = sub_value
        else:
            flat[_FILE_ALIASES.get(str(key), str(key))] = value
    unknown = sorted(set(flat) - set(FlowSettings.model_fields))
    if unknown:
        raise ValidationError(
            f"Config file {str(path)!r} has unknown setting {unknown[0]!r}",
            field=unknown[0],
            value=str(path),
            hint=f"Valid settings: {', '.join(FlowSettings.model_fields)}",
        )
    return flat


def _read_environment() -> dict[str, Any]:
    return {
        field: os.environ[var]
        for field, var in ENV_VARS.items()
        if var in os.environ and os.environ[var] != ""
    }


def load_settings(**overrides: Any) -> FlowSettings:
    """Resolve settings: keyword arguments > environment > config file > defaults.

    Arguments that are ``None`` are ignored (so CLI options left unset fall through).

    Raises:
        ValidationError: An unknown provider, a malformed config file or a bad value; the message
            names the source (argument, environment variable or file), the field and the value.
    """
    unknown = sorted(set(overrides) - set(FlowSettings.model_fields))
    if unknown:
        raise ValidationError(
            f"Unknown setting {unknown[0]!r}",
            field=unknown[0],
            hint=f"Valid settings: {', '.join(FlowSettings.model_fields)}",
        )
    path = config_path()
    layers: list[tuple[str, dict[str, Any]]] = [
        (f"config file {str(path)!r}", _read_config_file(path)),
        ("environment", _read_environment()),
        ("arguments", {key: value for key, value in overrides.items() if value is not None}),
    ]
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            merged[key] = value
            origin[key] = source if source != "environment" else f"environment ({ENV_VARS[key]})"
    try:
        return FlowSettings(**merged)
    except ValidationError as error:  # say where the bad value came from
        field = (error.field or "").split(".")[0]
        where = f"settings from {origin.get(field, 'defaults')}"
        raise ValidationError(
            error.message.replace("FlowSettings", where, 1),
            field=error.field,
            value=error.value,
            hint=error.hint,
        ) from None
