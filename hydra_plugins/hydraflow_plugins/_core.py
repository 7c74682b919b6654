"""The ``flow`` launcher's work: every job of a batch becomes one Flow task.

For each job: compose its sweep config here, write a job spec (cloudpickle of Hydra's context, the
sweep config, the task function and Hydra's singleton state), start a task running
``python -m hydra_plugins.hydraflow_plugins._job_runner <spec>``, keep at most ``max_parallel`` tasks
live, and turn each task's result file into the job's ``JobReturn``. Every task this launcher started
and that is still live is cancelled on any exit path (exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import OmegaConf, open_dict, read_write

from hydra_plugins.hydraflow_plugins._job_runner import SPEC_VERSION
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import RUNNER_MODULE, JobFiles
from hydra_plugins.hydraflow_plugins._plan import check_budget, format_plan, make_plan
from hydra_plugins.hydraflow_plugins._progress import Progress
from hydra_plugins.hydraflow_plugins._tasks import FlowJob, run_jobs

if TYPE_CHECKING:
    from flow_backend import Flow, TaskConfig
    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher

log = logging.getLogger(__name__)

DEFAULT_INSTANCE = "cpu"


def launch(
    launcher: FlowLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Launch a batch whose jobs are numbered from ``initial_job_idx``; results in job order."""
    numbered = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    return launch_numbered(launcher, numbered)


def launch_numbered(
    launcher: FlowLauncher, numbered: Sequence[tuple[int, list[str]]]
) -> list[JobReturn]:
    """Launch jobs with explicit numbers (the flow sweeper skips finished ones); results in order."""
    assert launcher.config is not None and launcher.hydra_context is not None
    assert launcher.task_function is not None
    if not numbered:
        return []
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    options = LauncherOptions.from_params(launcher.params)
    flow = _open_flow(options)
    with flow:
        provider = flow.settings.provider
        jobs = [_compose(launcher, options, num, overrides) for num, overrides in numbered]
        rows = make_plan(
            [(job.num, job.overrides, job.instance_type) for job in jobs],
            options,
            lambda name: flow.provider.price_per_hour(name),
        )
        for job, row in zip(jobs, rows, strict=True):
            job.price_per_hour = row.price_per_hour
        if options.dry_run:
            print(format_plan(rows, provider), flush=True)
            check_budget(rows, options)
            return [_dry_run_return(job) for job in jobs]
        check_budget(rows, options)
        common = _common_payload(launcher)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        log.info(
            f"Flow launcher ({provider}) is launching {len(jobs)} job(s) of sweep "
            f"{launcher.sweep_id}, sweep output dir : {sweep_dir}"
        )
        for job in jobs:
            log.info(f"\t#{job.num} : {job.overrides_text}")
            _write_spec(job, common)
        build = _task_config_for(launcher, options, provider)
        for job in jobs:
            build(job, 0)  # every task config is valid before the first task starts
        with Progress(jobs) as progress:
            run_jobs(flow, jobs, options, progress, build)
            progress.summary()
    return [job.job_return() for job in sorted(jobs, key=lambda j: j.num)]


def _open_flow(options: LauncherOptions) -> Flow:
    from flow_backend import Flow
    from flow_backend.errors import FlowError

    try:
        return Flow(provider=options.provider)
    except FlowError as error:
        raise FlowLauncherError(f"hydra.launcher.provider={options.provider!r}: {error}") from None


def _compose(
    launcher: FlowLauncher, options: LauncherOptions, num: int, overrides: list[str]
) -> FlowJob:
    """The job's sweep config, numbered and pinned, as the task will run it."""
    from flow_backend.errors import FlowError
    from flow_backend.instance_types import parse_instance_type

    assert launcher.config is not None and launcher.hydra_context is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(
        launcher.config, list(overrides)
    )
    task_name = f"hf-{launcher.sweep_id}-{num}"
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = task_name
        sweep_config.hydra.job.num = num
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(sweep_config)
    try:
        with read_write(sweep_config.hydra), open_dict(sweep_config.hydra):
            # pin the sweep dir: `${now:...}` must not be evaluated again on the task side
            sweep_config.hydra.sweep.dir = str(sweep_config.hydra.sweep.dir)
        subdir = OmegaConf.select(sweep_config, "hydra.sweep.subdir")
        output_dir = Path(os.getcwd(), str(sweep_config.hydra.sweep.dir), str(subdir))
    finally:
        HydraConfig.instance().cfg = saved
    instance = OmegaConf.select(sweep_config, "flow.instance", default=None)
    instance_type = str(instance or options.instance or DEFAULT_INSTANCE)
    try:
        parse_instance_type(instance_type)
    except FlowError as error:
        where = "flow.instance" if instance else "hydra.launcher.instance"
        raise FlowLauncherError(f"job #{num} ({where}={instance_type!r}): {error}") from None
    return FlowJob(
        num=num,
        overrides=list(overrides),
        overrides_text=" ".join(filter_overrides(overrides)) or "(none)",
        sweep_config=sweep_config,
        files=JobFiles(output_dir.resolve()),
        instance_type=instance_type,
        task_name=task_name,
    )


def _common_payload(launcher: FlowLauncher) -> dict[str, bytes]:
    """Pickle what every job shares once; a task function that cannot be pickled stops here."""
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
        context = cloudpickle.dumps(launcher.hydra_context)
    except Exception as error:
        raise FlowLauncherError(
            f"Hydra's context (config loader and callbacks) cannot be pickled "
            f"({type(error).__name__}: {error}). Nothing was launched. Check hydra.callbacks"
        ) from None
    return {
        "hydra_context": context,
        "task_function": function,
        "singleton_state": cloudpickle.dumps(Singleton.get_state()),
    }


def _write_spec(job: FlowJob, common: dict[str, bytes]) -> None:
    header = {
        "version": SPEC_VERSION,
        "sys_path": [p for p in sys.path if p],
        "cwd": os.getcwd(),
        "parts": {**common, "sweep_config": cloudpickle.dumps(job.sweep_config)},
    }
    job.files.spec.parent.mkdir(parents=True, exist_ok=True)
    job.files.result.unlink(missing_ok=True)
    job.files.spec.write_bytes(pickle.dumps(header))


def _task_config_for(
    launcher: FlowLauncher, options: LauncherOptions, provider: str
) -> Callable[[FlowJob, int], TaskConfig]:
    """A function building each job's TaskConfig (attempt 0, 1, ...)."""
    from flow_backend import TaskConfig
    from flow_backend.errors import FlowError
    from hydraflow.conventions import (
        ENV_COST_PER_HOUR,
        ENV_INSTANCE_TYPE,
        ENV_PROVIDER,
        ENV_SWEEP_ID,
        ENV_TASK_NAME,
    )

    def build(job: FlowJob, attempt: int) -> TaskConfig:
        name = job.task_name if attempt == 0 else f"{job.task_name}-r{attempt}"
        env = {
            **options.env,
            ENV_SWEEP_ID: launcher.sweep_id,
            ENV_TASK_NAME: name,
            ENV_PROVIDER: provider,
            ENV_INSTANCE_TYPE: job.instance_type,
            ENV_COST_PER_HOUR: f"{job.price_per_hour:g}",
        }
        try:
            return TaskConfig(
                name=name,
                unique_name=False,
                command=[sys.executable, "-m", RUNNER_MODULE, str(job.files.spec)],
                instance_type=job.instance_type,
                image=options.image,
                env=env,
                working_dir=os.getcwd(),
                volumes=options.volumes,
                max_price_per_hour=options.max_price_per_hour,
                max_run_time_hours=options.max_run_time_hours,
                num_instances=options.num_instances,
            )
        except FlowError as error:
            raise FlowLauncherError(f"hydra.launcher: {error}") from None

    return build


def _dry_run_return(job: FlowJob) -> JobReturn:
    ret = job.base_return()
    ret.status = JobStatus.COMPLETED
    ret.return_value = None
    return ret


__all__ = ["launch", "launch_numbered"]
