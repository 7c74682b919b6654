"""The ``flow`` launcher's work: every job of a batch becomes one Flow task.

For each job: compose its sweep config here, write a job spec (cloudpickle of Hydra's context, the
sweep config, the task function and Hydra's singleton state), start a task running
``python -m hydra_plugins.hydraflow_plugins._job_runner <spec>``, keep at most ``max_parallel`` tasks
live, and turn each task's result file into the job's ``JobReturn``. Every task this launcher started
and that is still live is cancelled on any exit path (exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import copy
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
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.hydraflow_plugins._job_runner import job_spec
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import RUNNER_MODULE, JobFiles
from hydra_plugins.hydraflow_plugins._plan import check_budget, format_plan, make_plan
from hydra_plugins.hydraflow_plugins._progress import Progress
from hydra_plugins.hydraflow_plugins._remote import (
    ENV_HOLD_SECONDS,
    ENV_JOB_STORE,
    HOLD_SECONDS,
    RemoteLayout,
)
from hydra_plugins.hydraflow_plugins._remote_jobs import remote_jobs
from hydra_plugins.hydraflow_plugins._task_function import reference_to
from hydra_plugins.hydraflow_plugins._tasks import FlowJob, copy_task_log, run_jobs

if TYPE_CHECKING:
    from flow_backend import Flow, TaskConfig
    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher

log = logging.getLogger(__name__)

DEFAULT_INSTANCE = "cpu"
DEFAULT_REMOTE_PYTHON = "python3"


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
        sweep_dir = Path(os.getcwd(), str(config.hydra.sweep.dir)).resolve()
        jobs = [_new_job(launcher, options, sweep_dir, num, ovr) for num, ovr in numbered]
        rows = make_plan(
            [(job.num, job.overrides, job.instance_type) for job in jobs],
            options,
            flow.provider.price_per_hour,
        )
        for job, row in zip(jobs, rows, strict=True):
            job.price_per_hour = row.price_per_hour
        if options.dry_run:
            print(format_plan(rows, provider), flush=True)
            check_budget(rows, options)
            return [_dry_run_return(job) for job in jobs]
        check_budget(rows, options)
        common = _common_payload(launcher)
        build = _task_config_for(launcher, options, provider)
        for job in jobs:
            build(job, 0)  # every task config is valid before the first task starts
        log.info(
            f"Flow launcher ({provider}) is launching {len(jobs)} job(s) of sweep "
            f"{launcher.sweep_id}, sweep output dir : {config.hydra.sweep.dir}"
        )
        for job in jobs:
            log.info(f"\t#{job.num} : {job.overrides_text}")
            _prepare_files(job, common, local=provider == "local")
        remote = remote_jobs(launcher, jobs, common, _compose) if provider != "local" else None
        progress = Progress(jobs)
        with progress:
            try:
                run_jobs(
                    flow, jobs, options, progress, build, remote.collector(flow) if remote else None
                )
            finally:
                if remote is not None:
                    remote.cleanup()
                _close_orphan_runs(launcher, jobs)
        progress.summary()  # after the live table is gone
        _report_failures(jobs, progress)
    returns = []
    for job in sorted(jobs, key=lambda j: j.num):
        if job.result is not None:
            returns.append(job.result)
            continue
        sweep_config = _compose(launcher, job)  # only for jobs that died without a result
        output_dir = Path(str(sweep_config.hydra.runtime.output_dir))
        output_dir.mkdir(parents=True, exist_ok=True)
        copy_task_log(job, output_dir)
        returns.append(job.job_return(sweep_config))
    return returns


def _new_job(
    launcher: FlowLauncher,
    options: LauncherOptions,
    sweep_dir: Path,
    num: int,
    overrides: list[str],
) -> FlowJob:
    return FlowJob(
        num=num,
        overrides=list(overrides),
        overrides_text=" ".join(filter_overrides(overrides)) or "(none)",
        instance_type=_instance_type(launcher, options, num, overrides),
        task_name=f"hf-{launcher.sweep_id}-{num}",
        files=JobFiles.for_job(sweep_dir, num),
    )


def _instance_type(
    launcher: FlowLauncher, options: LauncherOptions, num: int, overrides: list[str]
) -> str:
    """The job's own ``flow.instance`` (override or app config), else the launcher's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from flow_backend.errors import FlowError
    from flow_backend.instance_types import parse_instance_type

    chosen, where = None, "hydra.launcher.instance"
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.key_or_group in ("flow/instance", "flow.instance"):
            chosen, where = override.value(), "flow.instance"
    if chosen is None and launcher.config is not None:
        chosen = OmegaConf.select(launcher.config, "flow.instance", default=None)
        where = "flow.instance" if chosen is not None else where
    name = str(chosen or options.instance or DEFAULT_INSTANCE)
    try:
        parse_instance_type(name)
    except FlowError as error:
        raise FlowLauncherError(f"job #{num} ({where}={name!r}): {error}") from None
    return name


def _open_flow(options: LauncherOptions) -> Flow:
    from flow_backend import Flow
    from flow_backend.errors import FlowError

    try:
        return Flow(provider=options.provider)
    except FlowError as error:
        raise FlowLauncherError(f"hydra.launcher.provider={options.provider!r}: {error}") from None


def _compose(launcher: FlowLauncher, job: FlowJob) -> DictConfig:
    """The job's sweep config as the task composed it (for a job that left no result)."""
    assert launcher.config is not None and launcher.hydra_context is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(
        launcher.config, list(job.overrides)
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
    assert launcher.config is not None
    config = copy.deepcopy(launcher.config)
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


def _prepare_files(job: FlowJob, common: dict[str, bytes], local: bool) -> None:
    """The job's folder, no stale result, and (local jobs) its spec; remote jobs get a staged one."""
    job.files.folder.mkdir(parents=True, exist_ok=True)
    job.files.result.unlink(missing_ok=True)
    if local:
        spec = job_spec(
            job.num,
            job.overrides,
            job.task_name,
            common,
            cwd=os.getcwd(),
            sys_path=[p for p in sys.path if p],
        )
        job.files.spec.write_bytes(spec)


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
        remote = provider != "local"
        env = {
            **options.env,
            **({ENV_JOB_STORE: "1", ENV_HOLD_SECONDS: str(HOLD_SECONDS)} if remote else {}),
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
                command=_command(job, attempt, options, remote, launcher.sweep_id),
                instance_type=job.instance_type,
                image=options.image,
                env=env,
                working_dir=None if remote else os.getcwd(),
                upload_code=remote,
                code_root=os.getcwd() if remote else None,
                volumes=options.volumes,
                max_price_per_hour=options.max_price_per_hour,
                max_run_time_hours=options.max_run_time_hours,
                num_instances=options.num_instances,
            )
        except FlowError as error:
            raise FlowLauncherError(f"hydra.launcher: {error}") from None

    return build


def _command(
    job: FlowJob, attempt: int, options: LauncherOptions, remote: bool, sweep_id: str
) -> list[str]:
    """The task's command: absolute local paths locally, paths in the uploaded code remotely."""
    if not remote:
        return [options.python or sys.executable, "-m", RUNNER_MODULE, str(job.files.spec)]
    layout = RemoteLayout(sweep_id, job.num)
    return [
        options.python or DEFAULT_REMOTE_PYTHON,
        "-m",
        RUNNER_MODULE,
        layout.spec,
        layout.result(attempt),
        layout.sweep_dir(attempt),
    ]


def _report_failures(jobs: Sequence[FlowJob], progress: Progress) -> None:
    for job in jobs:
        ret = job.job_return()
        if ret.status == JobStatus.FAILED:
            error = ret._return_value
            first = str(error).splitlines()[0] if str(error) else ""
            progress.message(
                f"[flow] job #{job.num} ({job.overrides_text}) FAILED: "
                f"{type(error).__name__}: {first} (task output: {job.files.task_log})"
            )


def _close_orphan_runs(launcher: FlowLauncher, jobs: Sequence[FlowJob]) -> None:
    """Mark FAILED the MLflow runs of jobs whose process died before the callback could end them."""
    died = [job for job in jobs if job.result is None]
    if not died or launcher.config is None:
        return
    from hydra_plugins.hydraflow_plugins._resume import mlflow_callback_settings

    settings = mlflow_callback_settings(launcher.config)
    if settings is None:
        return
    try:
        from hydraflow._mlflow_store import fail_running_job_runs
        from hydraflow.conventions import resolve_tracking_uri

        uri = settings.get("tracking_uri") or resolve_tracking_uri(
            str(launcher.config.hydra.runtime.cwd)
        )
        experiment = settings.get("experiment") or str(launcher.config.hydra.job.name)
        reasons = {job.num: str(job.failure or "the task died").splitlines()[0] for job in died}
        fail_running_job_runs(uri, experiment, launcher.sweep_id, reasons)
    except Exception as error:  # recording the failure must not hide the failure itself
        log.warning(f"could not mark the runs of jobs that died as FAILED: {error}")


def _dry_run_return(job: FlowJob) -> JobReturn:
    ret = JobReturn()
    ret.overrides = list(job.overrides)
    ret.status = JobStatus.COMPLETED
    ret.return_value = None
    return ret


__all__ = ["launch", "launch_numbered"]
