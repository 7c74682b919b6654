"""The job environment of a remote instance: what the launcher plans, ships and wraps.

As hydra_ray_launcher's ``env_setup`` does, the remote side gets the launching environment's versions
of what the job runner needs (:func:`runner_requirements`), plus the user's ``hydra.launcher.setup``
commands and ``hydra.launcher.requirements`` file. The venv is keyed by a hash of all that and the
base interpreter (:func:`env_key`), so it is made once per instance and reused by every later task of
any sweep with the same needs; this project's own code is not installed in it but shipped with each
sweep's code upload (``.hydraflow/<sweep id>/hydraflow-code``) and put first on ``PYTHONPATH``. The
instance side is :mod:`hydra_plugins.hydraflow_plugins._env_boot`.

``env_setup: null`` (the default) prepares the environment unless ``python`` names a ready
interpreter or ``image`` a container; ``true`` builds it from ``python``; ``false`` runs on ``python``
as it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from hydra_plugins.hydraflow_plugins._env_boot import FAILED_PREFIX
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions

__all__ = [
    "CODE_DIR",
    "RemoteEnv",
    "env_failure",
    "env_key",
    "plan_remote_env",
    "runner_requirements",
]

# What the job runner and the MLflow callback import on the instance (the callback's sqlite store
# needs sqlalchemy and alembic); mlflow-skinny when the launching side has it, else mlflow.
RUNNER_DISTRIBUTIONS: tuple[tuple[str, ...], ...] = (
    ("hydra-core",),
    ("omegaconf",),
    ("cloudpickle",),
    ("mlflow-skinny", "mlflow"),
    ("sqlalchemy",),
    ("alembic",),
)
# This project's packages the runner imports (shipped as source: no build step, no index).
SHIPPED_PACKAGES = ("hydraflow", "hydra_plugins.hydraflow_plugins")
CODE_DIR = "hydraflow-code"
PROJECT_DISTRIBUTION = "hydraflow"
DEFAULT_BASE_PYTHON = "python3"


def hydra_plugin_distributions() -> list[str]:
    """The installed distributions (not this project) that ship Hydra plugins.

    Their config classes are in the ConfigStore the launcher pickles into every job spec, so the job
    runner cannot restore Hydra's state without them.
    """
    names = {
        str(dist.metadata["Name"])
        for dist in metadata.distributions()
        if "hydra_plugins/" in (dist.read_text("RECORD") or "")  # 15x faster than dist.files
    }
    return sorted(names - {PROJECT_DISTRIBUTION})


def runner_requirements(
    version: Callable[[str], str] = metadata.version,
    plugins: Callable[[], list[str]] = hydra_plugin_distributions,
) -> list[str]:
    """``name==version`` of every distribution the job runner needs, as installed here."""
    pins: list[str] = [f"{name}=={version(name)}" for name in plugins()]
    for choices in RUNNER_DISTRIBUTIONS:
        for name in choices:
            try:
                pins.append(f"{name}=={version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            raise FlowLauncherError(
                f"hydra.launcher.env_setup: {' or '.join(choices)} is not installed here, so its "
                "version for the remote job environment is unknown; install it, or set "
                "hydra.launcher.env_setup=false with hydra.launcher.python naming a ready interpreter"
            )
    return sorted(pins)


def env_key(
    base_python: str, requirements: list[str], setup: list[str], requirements_text: str
) -> str:
    """The name of the venv that holds exactly these needs (same needs, same venv)."""
    material = json.dumps(
        {
            "python": base_python,
            "requirements": requirements,
            "setup": setup,
            "requirements_file": requirements_text,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RemoteEnv:
    """The plan of one sweep's job environment; :meth:`wrap` turns a runner command into its task."""

    key: str
    base_python: str
    requirements: list[str]
    setup: list[str]
    requirements_file: str | None
    env_dir: str
    code: str  # the shipped project code, relative to the uploaded code

    def wrap(self, python_args: list[str]) -> list[str]:
        """The task command running ``python <python_args>`` in the prepared environment."""
        plan = json.dumps(
            {
                "key": self.key,
                "base_python": self.base_python,
                "requirements": self.requirements,
                "setup": self.setup,
                "requirements_file": self.requirements_file,
                "env_dir": self.env_dir,
                "code": self.code,
            }
        )
        boot = f"{self.code}/hydra_plugins/hydraflow_plugins/_env_boot.py"
        return [self.base_python, boot, plan, "--", *python_args]


def _setup_commands(options: LauncherOptions) -> list[str]:
    setup = options.setup
    if setup is None:
        return []
    if isinstance(setup, str):
        return [setup]
    if not all(isinstance(c, str) and c.strip() for c in setup):
        raise FlowLauncherError(
            f"hydra.launcher.setup={setup!r} is invalid: it must be a list of shell commands. "
            "Set e.g. hydra.launcher.setup='[pip install numpy]'"
        )
    return list(setup)


def _requirements_text(launch_dir: Path, options: LauncherOptions) -> tuple[str | None, str]:
    name = options.requirements
    if not name:
        return None, ""
    path = launch_dir / name
    if Path(name).is_absolute() or not path.is_file():
        raise FlowLauncherError(
            f"hydra.launcher.requirements={name!r} is invalid: no such file in the launch dir "
            f"{launch_dir} (it is uploaded with the code, so it must be inside it). "
            "Set e.g. hydra.launcher.requirements=requirements.txt"
        )
    return Path(name).as_posix(), path.read_text(encoding="utf-8", errors="replace")


def plan_remote_env(options: LauncherOptions, launch_dir: Path, stage: Path) -> RemoteEnv | None:
    """The sweep's job environment (its project code copied into ``stage``), or ``None`` when off."""
    if options.env_setup is None:  # a named interpreter or an image is the user's own environment
        wanted = options.python is None and options.image is None
    else:
        wanted = options.env_setup
    if not wanted:
        return None
    base_python = options.python or DEFAULT_BASE_PYTHON
    requirements = runner_requirements()
    setup = _setup_commands(options)
    if not str(options.env_dir or "").strip():
        raise FlowLauncherError(
            f"hydra.launcher.env_dir={options.env_dir!r} is invalid: it must name a folder on the "
            "instance. Set e.g. hydra.launcher.env_dir=~/.cache/hydraflow/envs"
        )
    requirements_file, requirements_text = _requirements_text(launch_dir, options)
    code = stage / CODE_DIR
    _ship_project_code(code)
    return RemoteEnv(
        key=env_key(base_python, requirements, setup, requirements_text),
        base_python=base_python,
        requirements=requirements,
        setup=setup,
        requirements_file=requirements_file,
        env_dir=options.env_dir,
        code=code.relative_to(launch_dir).as_posix(),
    )


def _ship_project_code(target: Path) -> None:
    """Copy this project's runner packages (as imported here) into ``target``."""
    import importlib

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in SHIPPED_PACKAGES:
        module = importlib.import_module(package)
        source = Path(str(module.__file__)).parent
        shutil.copytree(
            source, target / package.replace(".", "/"), ignore=ignore, dirs_exist_ok=True
        )


def env_failure(task_output: str) -> str | None:
    """The line of a task's output saying its job environment could not be made, if any."""
    for line in task_output.splitlines():
        if line.startswith(FAILED_PREFIX):
            return line.removeprefix("hydraflow: ")
    return None
