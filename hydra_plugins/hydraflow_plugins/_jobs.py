"""A job of a ``flow`` launch: its identity, its composed config and its ``JobReturn``.

This is the one home of what a job *is* (number, overrides, instance type, task name, files, price)
and of what the launcher derives from it on its side: the sweep config as the task composes it, the
payload every job shares, the task that runs an attempt (``TaskAttempt``), and the ``JobReturn`` of a job that
produced none (``FAILED``, with its log) or that a dry run only planned.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import JobFiles, copy_task_log
from hydra_plugins.hydraflow_plugins._plan import task_gpus, task_price
from hydra_plugins.hydraflow_plugins._task_function import reference_to

if TYPE_CHECKING:
    from flow_backend.instance_types import InstanceType
    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher
    from hydraflow.sweep_context import TaskAttempt

__all__ = ["DEFAULT_INSTANCE", "Job", "JobContext", "TaskEndedWithoutResult"]

DEFAULT_INSTANCE = "cpu"


class TaskEndedWithoutResult(CompactHydraException):
    """A job's task ended (killed, out of memory, preempted, cancelled) without writing a result."""


@dataclass(frozen=True)
class Job:
    """What identifies one job of a launch (never changes while it runs)."""

    num: int
    overrides: tuple[str, ...]
    overrides_text: str
    instance_type: str
    task_name: str
    files: JobFiles
    price_per_hour: float = 0.0
    gpus: int = 0  # GPUs its task asks for (all instances)

    def attempt_name(self, attempt: int) -> str:
        """The task name of attempt ``attempt`` (0, 1, ...)."""
        return self.task_name if attempt == 0 else f"{self.task_name}-r{attempt}"


class JobContext:
    """One launcher's jobs: makes them, composes their configs and builds their returns.

    Args:
        launcher: The set-up launcher (config, Hydra context, task function, sweep id).
        options: The validated ``hydra.launcher`` fields.
        price_of: The provider's price per hour of an instance type (cached here).
        offered: The provider's instance types (asked only when a job names none, to see
            whether ``cpu``, the default, is one of them and to list them otherwise).
        provider: The provider's name (for that error).
    """

    def __init__(
        self,
        launcher: FlowLauncher,
        options: LauncherOptions,
        price_of: Callable[[str], float],
        offered: Callable[[], Sequence[InstanceType]] | None = None,
        provider: str | None = None,
    ) -> None:
        assert launcher.config is not None and launcher.hydra_context is not None
        self.launcher = launcher
        self.config: DictConfig = launcher.config
        self.sweep_id = launcher.sweep_id
        self.options = options
        self.sweep_dir = Path(os.getcwd(), str(self.config.hydra.sweep.dir)).resolve()
        self._price_of = price_of
        self._prices: dict[str, float] = {}
        self._offered = offered
        self._provider = provider
        self._default: str | None = None

    def price_of(self, instance_type: str) -> float:
        """The provider's price per hour of one instance of ``instance_type`` (asked once)."""
        if instance_type not in self._prices:
            self._prices[instance_type] = self._price_of(instance_type)
        return self._prices[instance_type]

    def job(self, num: int, overrides: list[str] | tuple[str, ...]) -> Job:
        """The job ``num`` with these overrides (its instance type checked, its price known)."""
        instance_type = self._instance_type(num, list(overrides))
        return Job(
            num=num,
            overrides=tuple(overrides),
            overrides_text=" ".join(filter_overrides(list(overrides))) or "(none)",
            instance_type=instance_type,
            task_name=f"hf-{self.sweep_id}-{num}",
            files=JobFiles.for_job(self.sweep_dir, num),
            price_per_hour=task_price(self.price_of(instance_type), self.options),
            gpus=task_gpus(instance_type, self.options),
        )

    def _instance_type(self, num: int, overrides: list[str]) -> str:
        """The job's own ``flow.instance`` (override or app config), else the launcher's."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from flow_backend.errors import FlowError
        from flow_backend.instance_types import parse_instance_type

        chosen, where = None, "hydra.launcher.instance"
        for override in OverridesParser.create().parse_overrides(overrides):
            if override.key_or_group in ("flow/instance", "flow.instance"):
                chosen, where = override.value(), "flow.instance"
        if chosen is None:
            chosen = OmegaConf.select(self.config, "flow.instance", default=None)
            where = "flow.instance" if chosen is not None else where
        name = str(chosen or self.options.instance or self._default_instance(num))
        try:
            parse_instance_type(name)
        except FlowError as error:
            raise FlowLauncherError(f"job #{num} ({where}={name!r}): {error}") from None
        return name

    def _default_instance(self, num: int) -> str:
        """``cpu`` where the provider offers it; else one error listing what it offers (a cloud
        of GPU types has no default: each costs dollars an hour)."""
        if self._default is not None or self._offered is None:
            return self._default or DEFAULT_INSTANCE
        offered = list(self._offered())
        if any(DEFAULT_INSTANCE in (it.name, *it.short_names) for it in offered):
            self._default = DEFAULT_INSTANCE
            return self._default
        choices = ", ".join(
            dict.fromkeys(it.short_names[0] if it.short_names else it.name for it in offered)
        )
        raise FlowLauncherError(
            f"job #{num}: no instance type given (hydra.launcher.instance is unset) and provider "
            f"{self._provider!r} has no default (no {DEFAULT_INSTANCE!r} type). Choose one with "
            f"hydra/launcher/instance=NAME (or +flow/instance=NAME per job), one of: "
            f"{choices or '(none offered now)'}; `flow instance-types` shows their prices"
        )

    def compose(self, job: Job) -> DictConfig:
        """The job's sweep config as the task composes it (``hydra.job.num``/``id`` set)."""
        hydra_context = self.launcher.hydra_context
        assert hydra_context is not None
        sweep_config = hydra_context.config_loader.load_sweep_config(
            self.config, list(job.overrides)
        )
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = job.task_name
            sweep_config.hydra.job.num = job.num
        saved = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(sweep_config)
        try:
            subdir = OmegaConf.select(sweep_config, "hydra.sweep.subdir")
            output_dir = Path(os.getcwd(), str(sweep_config.hydra.sweep.dir), str(subdir))
            with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
                sweep_config.hydra.runtime.output_dir = str(output_dir.resolve())
        finally:
            HydraConfig.instance().cfg = saved
        return sweep_config

    def common_payload(self, job_stores: bool = False) -> dict[str, bytes]:
        """Pickle what every job shares once; a task function that cannot be pickled stops here.

        ``job_stores``: the jobs run where this machine's files are not: each logs into a store in
        its output folder (``hydraflow.sweep_context.with_job_stores``), imported when it is home.
        """
        from hydraflow.sweep_context import with_job_stores

        launcher = self.launcher
        name = getattr(launcher.task_function, "__qualname__", repr(launcher.task_function))
        try:
            function = cloudpickle.dumps(launcher.task_function)
        except Exception as error:
            raise FlowLauncherError(
                f"The task function {name!r} cannot be pickled, so it cannot run as a Flow task "
                f"({type(error).__name__}: {error}). Nothing was launched. Keep locks, open files, "
                "connections and other live objects out of its closure and module globals it uses"
            ) from None
        try:
            hydra_context = launcher.hydra_context
            context = cloudpickle.dumps(
                with_job_stores(hydra_context) if job_stores else hydra_context
            )
        except Exception as error:
            raise FlowLauncherError(
                f"Hydra's context (config loader and callbacks) cannot be pickled "
                f"({type(error).__name__}: {error}). Nothing was launched. Check hydra.callbacks"
            ) from None
        config = copy.deepcopy(self.config)
        with read_write(config.hydra), open_dict(config.hydra):
            # pin the sweep dir: `${now:...}` must not be evaluated again on the task side
            config.hydra.sweep.dir = str(config.hydra.sweep.dir)
        return {
            "hydra_context": context,
            "task_function": function,
            "task_reference": pickle.dumps(reference_to(launcher.task_function, os.getcwd())),
            "singleton_state": cloudpickle.dumps(Singleton.get_state()),
            "config": cloudpickle.dumps(config),
        }

    def task_attempt(self, job: Job, provider: str, attempt: int) -> TaskAttempt:
        """Which task runs ``job``'s attempt ``attempt``: what the job runner hands the job's MLflow
        callback (``flow.*`` tags, a retry's run replaced), as an argument, never in its env."""
        from hydraflow.sweep_context import TaskAttempt

        return TaskAttempt(
            task_name=job.attempt_name(attempt),
            provider=provider,
            instance_type=job.instance_type,
            cost_per_hour=f"{job.price_per_hour:g}",
            attempt=attempt,
        )

    def failed_return(self, job: Job, error: BaseException) -> JobReturn:
        """``FAILED`` for a job that left no result; its task log is kept in its output folder."""
        sweep_config = self.compose(job)
        output_dir = Path(str(sweep_config.hydra.runtime.output_dir))
        output_dir.mkdir(parents=True, exist_ok=True)
        copy_task_log(job.num, job.files, output_dir)
        ret = JobReturn()
        ret.overrides = list(job.overrides)
        task_cfg = OmegaConf.create(OmegaConf.to_container(sweep_config, resolve=False))
        assert isinstance(task_cfg, DictConfig)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret.cfg = task_cfg
        ret.hydra_cfg = OmegaConf.create({"hydra": sweep_config.hydra})
        ret.task_name = str(sweep_config.hydra.job.name)
        ret.status = JobStatus.FAILED
        ret.return_value = error
        return ret

    @staticmethod
    def dry_run_return(job: Job) -> JobReturn:
        """What a dry run returns for a job it only planned."""
        ret = JobReturn()
        ret.overrides = list(job.overrides)
        ret.status = JobStatus.COMPLETED
        ret.return_value = None
        return ret
