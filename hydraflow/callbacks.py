"""The Hydra callback that records a sweep and each of its jobs in MLflow.

Turn it on with ``hydra/callbacks=mlflow`` on the command line, or in an app's primary config::

    defaults:
      - override hydra/callbacks: mlflow

It follows DESIGN.md ("A sweep, end to end", "MLflow conventions"):

- ``on_multirun_start`` (launching process): resolve the store, create it and the experiment, start the
  sweep's parent run — before any job fans out, so that concurrent jobs never migrate a new store.
- ``on_job_start`` / ``on_job_end`` (wherever the job runs): the job's child run, active while the task
  function runs, so ``mlflow.log_metric`` inside it lands in the job's run.
- ``on_multirun_end``: the parent run gets the sweep summary and ends.

The callback object is pickled with Hydra's context by launchers that run jobs elsewhere (``flow``,
``joblib``), so the store, experiment and parent run travel with it to every job.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from hydraflow import _mlflow_store as store
from hydraflow._process import this_process
from hydraflow.conventions import (
    ENV_TASK_RESTARTS,
    TAG_CONFIG_HASH,
    TAG_COST_PER_HOUR,
    TAG_ERROR,
    TAG_INSTANCE_TYPE,
    TAG_JOB_NUM,
    TAG_LAUNCHER,
    TAG_OVERRIDES,
    TAG_PARENT_RUN_ID,
    TAG_PROVIDER,
    TAG_RETURN_VALUE,
    TAG_ROLE,
    TAG_SWEEP_DIR,
    TAG_SWEEP_ID,
    TAG_SWEEP_KEY,
    TAG_TASK_ID,
    TAG_TOTAL_COST,
    config_hash,
    default_tracking_uri,
    flatten_config,
    overrides_tag,
    resolve_tracking_uri,
    return_value_metrics,
)
from hydraflow.sweep_context import SweepIds, TaskAttempt

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["MLflowCallback", "job_config_container", "new_sweep_id"]

log = logging.getLogger(__name__)

_MAX_TAG_VALUE = 5000  # stay below MLflow's tag value limit; longer return values go to an artifact


def new_sweep_id() -> str:
    """A short id, unique per sweep: the ``hydraflow.sweep_id`` tag and the task name infix."""
    return secrets.token_hex(4)


def job_config_container(config: DictConfig) -> dict[str, Any]:
    """The job's own config (``hydra`` removed), resolved to plain Python (``???`` kept as text).

    Keys are resolved in place, against the full config, so ``${hydra:...}`` and cross-references
    resolve as the task function sees them.
    """
    resolved: dict[str, Any] = {}
    for key in config:
        name = str(key)
        if name == "hydra":
            continue
        node = config._get_node(name)
        if OmegaConf.is_config(node):
            resolved[name] = OmegaConf.to_container(node, resolve=True)
        elif OmegaConf.is_missing(config, name):
            resolved[name] = "???"
        else:
            resolved[name] = config[name]
    return resolved


def _flow_task_tags(attempt: TaskAttempt | None) -> dict[str, str]:
    """The ``flow.*`` tags of a job that runs in a Flow task (its provider sets ``FLOW_TASK_ID``;
    the flow launcher's job runner hands the callback the ``attempt``); none for a job that
    Hydra's basic or joblib launcher ran in a plain process."""
    task_id = os.environ.get("FLOW_TASK_ID") or (attempt.task_name if attempt else None)
    if not task_id:
        return {}
    found = {TAG_TASK_ID: task_id}
    if attempt is not None:
        found[TAG_PROVIDER] = attempt.provider
        found[TAG_INSTANCE_TYPE] = attempt.instance_type
        found[TAG_COST_PER_HOUR] = attempt.cost_per_hour
    return {tag: value for tag, value in found.items() if value}


def _starts_again(attempt: TaskAttempt | None) -> bool:
    """Whether this job ran before in its sweep: a launcher retry (``attempt``), or a task its
    scheduler restarted (``FLOW_TASK_RESTARTS``: a requeued SLURM job); an earlier start may have
    left its run ``RUNNING``."""
    restarts = os.environ.get(ENV_TASK_RESTARTS, "0") not in ("", "0")
    return restarts or (attempt is not None and attempt.attempt > 0)


def sweep_key(config: DictConfig) -> str:
    """What makes two launches the same sweep: the app (job name) and its command-line overrides."""
    overrides = sorted(str(o) for o in OmegaConf.select(config, "hydra.overrides.task") or [])
    return config_hash({"job": str(config.hydra.job.name), "overrides": overrides})


def _resumes(config: DictConfig) -> bool:
    """Whether the ``flow`` sweeper's resume is on (it skips jobs that already FINISHED)."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    rerun = OmegaConf.select(config, "hydra.sweeper.rerun_finished", default=False)
    return target.endswith(".flow_sweeper.FlowSweeper") and not rerun


def _launcher_provider_tag(config: DictConfig) -> dict[str, str]:
    """``flow.provider`` for a sweep run by the ``flow`` launcher: where repair asks for its tasks."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if not target.endswith(".flow_launcher.FlowLauncher"):
        return {}
    provider = OmegaConf.select(config, "hydra.launcher.provider", default=None)
    if provider is None:
        from flow_backend.errors import FlowError
        from flow_backend.settings import load_settings

        try:
            provider = load_settings().provider
        except FlowError:
            return {}  # the launcher reports the bad setting itself
    return {TAG_PROVIDER: str(provider)}


def _repair_quietly(tracking_uri: str, key: str) -> None:
    """End the runs that crashed sweeps left RUNNING (see :mod:`hydraflow.repair`); never raise.

    Warns when an earlier launch of the same sweep (``key``) still has live tasks.
    """
    from hydraflow.repair import repair_store

    try:
        for report in repair_store(tracking_uri):
            if report.ended:
                log.warning(
                    "MLflow: sweep %s was left RUNNING (%s): %d run(s) ended KILLED",
                    report.sweep_id,
                    report.note,
                    report.ended,
                )
            same = report.parent is not None and report.parent.data.tags.get(TAG_SWEEP_KEY) == key
            if same and report.state == "orphaned":
                log.warning(
                    "MLflow: an earlier launch of this sweep (%s) still runs: %s; its jobs may "
                    "run twice",
                    report.sweep_id,
                    report.note,
                )
    except Exception as error:
        log.warning("MLflow: could not check the store for crashed sweeps: %s", error)


class MLflowCallback(Callback):
    """Log a Hydra sweep to MLflow: one parent run per sweep, one child run per job.

    Args:
        experiment: Experiment name; default ``hydra.job.name``.
        tracking_uri: Store; default the user's ``MLFLOW_TRACKING_URI``, else an absolute
            ``sqlite:///<launch dir>/mlflow.db``.
    """

    def __init__(self, experiment: str | None = None, tracking_uri: str | None = None) -> None:
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.experiment_id: str | None = None
        self.sweep_id: str | None = None
        self.parent_run_id: str | None = None
        self._parent_open = False
        # set in the copy a launcher ships to jobs on remote hosts (sweep_context.with_job_stores)
        self.job_store = False
        # set in a job's copy by the flow launcher's job runner (sweep_context.with_attempt)
        self.attempt: TaskAttempt | None = None
        self._job_run_id: str | None = None
        self._job_started = 0.0

    # -- the sweep (launching process) ---------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the store, the experiment and the sweep's parent run before any job starts.

        Runs that earlier sweeps left RUNNING with nobody alive to end them end KILLED first
        (:mod:`hydraflow.repair`). With the ``flow`` sweeper's resume on, the same command again
        continues the parent run of its earlier sweep (same sweep id) instead of starting one.
        """
        if OmegaConf.select(config, "hydra.launcher.dry_run", default=False):
            return  # a dry run launches nothing and records nothing
        uri = self._tracking_uri(config)
        client = store.client_for(uri)
        key = sweep_key(config)
        _repair_quietly(uri, key)
        self.experiment_id = store.ensure_experiment(client, self._experiment(config), uri)
        sweep_dir = Path(str(config.hydra.runtime.cwd), str(config.hydra.sweep.dir)).resolve()
        tags = {
            TAG_ROLE: "sweep",
            TAG_SWEEP_DIR: str(sweep_dir),
            TAG_SWEEP_KEY: key,
            TAG_LAUNCHER: this_process(),
            **_launcher_provider_tag(config),
        }
        previous = (
            store.previous_sweep(client, self.experiment_id, key) if _resumes(config) else None
        )
        if previous is not None:
            self.sweep_id = previous.data.tags[TAG_SWEEP_ID]
            self.parent_run_id = previous.info.run_id
            store.continue_run(client, self.parent_run_id, tags)
            log.info("MLflow: resuming sweep %s: its parent run continues", self.sweep_id)
        else:
            self.sweep_id = new_sweep_id()
            run = store.retry_busy(
                lambda: client.create_run(
                    self.experiment_id or "",
                    run_name=f"sweep-{self.sweep_id}",
                    tags={**tags, TAG_SWEEP_ID: self.sweep_id or ""},
                )
            )
            self.parent_run_id = run.info.run_id
        self._parent_open = True
        atexit.register(self._summarise_and_close, True)
        log.info("MLflow: sweep %s → parent run %s in %s", self.sweep_id, self.parent_run_id, uri)

    def sweep_ids(self) -> SweepIds | None:
        """The sweep id and parent run ``on_multirun_start`` chose (``None`` before it ran)."""
        if self.sweep_id is None or self.parent_run_id is None:
            return None
        return SweepIds(self.sweep_id, self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Record the sweep summary (jobs, completed, failed, cost) on the parent run and end it."""
        self._tracking_uri(config)
        self._summarise_and_close(aborted=False)

    def _summarise_and_close(self, aborted: bool) -> None:
        """Summarise the children on the parent run and end it; FAILED if a job failed or the
        sweep was aborted (Hydra's sweepers raise on a failed job and skip ``on_multirun_end``:
        then this runs at exit)."""
        if not self._parent_open or self.parent_run_id is None or self.tracking_uri is None:
            return
        self._parent_open = False
        parent_run_id = self.parent_run_id
        try:
            client = store.client_for(self.tracking_uri)
            summary, cost_tag = store.sweep_summary(client, self.experiment_id or "", parent_run_id)
            store.log_batches(client, parent_run_id, tags=cost_tag, metrics=summary)
            # KILLED children (a pruned trial, a job ended by repair) do not fail the sweep
            status = "FAILED" if summary["failed"] or aborted else "FINISHED"
            store.retry_busy(lambda: client.set_terminated(parent_run_id, status))
        except Exception as error:  # at exit: report, never raise
            log.warning("MLflow: could not end parent run %s: %s", parent_run_id, error)

    # -- one job (wherever it runs) ------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Start the job's run (active while the task function runs) and log its params and tags.

        With ``job_store`` set (the launcher's copy for remote jobs), the run goes to ``mlflow.db``
        in the job's output folder, keeping the sweep's parent run id and the experiment name.
        """
        if getattr(self, "job_store", False):  # a remote job: its own store, imported when home
            self.tracking_uri = default_tracking_uri(str(config.hydra.runtime.output_dir))
            self.experiment_id = None
        uri = self._tracking_uri(config)
        # a single run, or a launcher that did not pickle us: the store is created if it is new;
        # else on_multirun_start made the store and the experiment
        client = store.client_for(uri, create=self.experiment_id is None)
        import mlflow  # imported by client_for

        mlflow.set_tracking_uri(uri)
        if self.experiment_id is None:
            self.experiment_id = store.ensure_experiment(client, self._experiment(config), uri)
        task_config = job_config_container(config)
        sweep_id, parent_run_id = self.sweep_id, self.parent_run_id  # pickled with us
        attempt = getattr(self, "attempt", None)
        job_num = OmegaConf.select(config, "hydra.job.num", default=None)
        overrides = list(OmegaConf.to_container(config.hydra.overrides.task) or [])
        tags = {
            TAG_ROLE: "job",
            TAG_JOB_NUM: str(job_num if job_num is not None else 0),
            TAG_OVERRIDES: overrides_tag(str(o) for o in overrides),
            TAG_CONFIG_HASH: config_hash(task_config),
            TAG_SWEEP_DIR: str(config.hydra.runtime.output_dir),
            **_flow_task_tags(attempt),
        }
        if sweep_id:
            tags[TAG_SWEEP_ID] = sweep_id
            tags[TAG_SWEEP_DIR] = str(Path(str(config.hydra.runtime.output_dir)).parent)
        if parent_run_id:
            tags[TAG_PARENT_RUN_ID] = parent_run_id
        run_name = f"{sweep_id}-{job_num}" if sweep_id else str(config.hydra.job.name)
        if sweep_id and job_num is not None and _starts_again(attempt):
            store.replace_earlier_job_runs(client, self.experiment_id, sweep_id, int(job_num))
        if mlflow.active_run() is not None:
            mlflow.end_run()
        run = store.retry_busy(
            lambda: mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, tags=tags)
        )
        self._job_run_id = run.info.run_id
        self._job_started = time.time()
        params, key_tags, too_long = store.params_and_key_tags(flatten_config(task_config))
        store.log_batches(client, self._job_run_id, params=params, tags=key_tags)
        if too_long:
            client.log_dict(self._job_run_id, too_long, "long_params.json")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Log the job's artifacts and return value, then end its run FINISHED or FAILED."""
        import mlflow
        from mlflow import MlflowClient

        run_id = self._job_run_id
        if run_id is None:
            return
        self._job_run_id = None
        client = MlflowClient(self._tracking_uri(config))  # on_job_start made sure the store exists
        try:
            self._log_outputs(client, run_id, config, job_return)
        finally:
            status = "FINISHED" if job_return.status == JobStatus.COMPLETED else "FAILED"
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                store.retry_busy(lambda: mlflow.end_run(status))
            else:  # the task function ended or replaced the run itself
                store.retry_busy(lambda: client.set_terminated(run_id, status))

    def _log_outputs(
        self, client: MlflowClient, run_id: str, config: DictConfig, job_return: JobReturn
    ) -> None:
        output_dir = Path(str(config.hydra.runtime.output_dir))
        hydra_dir = output_dir / str(config.hydra.output_subdir or ".hydra")
        if hydra_dir.is_dir():
            store.retry_busy(lambda: client.log_artifacts(run_id, str(hydra_dir), ".hydra"))
        log_file = OmegaConf.select(
            config, "hydra.job_logging.handlers.file.filename", default=None
        )
        if log_file and Path(str(log_file)).is_file():
            store.retry_busy(lambda: client.log_artifact(run_id, str(log_file)))
        tags: dict[str, str] = {}
        attempt = getattr(self, "attempt", None)
        if _flow_task_tags(attempt):  # the job ran as a Flow task: what it cost
            elapsed_hours = (time.time() - self._job_started) / 3600.0
            price = float(attempt.cost_per_hour or 0) if attempt is not None else 0.0
            tags[TAG_TOTAL_COST] = f"{price * elapsed_hours:.4f}"
        metrics: dict[str, float] = {}
        value = job_return._return_value
        if job_return.status == JobStatus.COMPLETED:
            metrics = return_value_metrics(value) or {}
            text = store.json_or_none(value)
            if text is not None and len(text) <= _MAX_TAG_VALUE:
                tags[TAG_RETURN_VALUE] = text
            if not metrics and value is not None:
                payload = json.loads(text) if text is not None else {"repr": repr(value)}
                client.log_dict(run_id, payload, "return_value.json")
        elif isinstance(value, BaseException):
            tags[TAG_ERROR] = f"{type(value).__name__}: {value}"[:_MAX_TAG_VALUE]
            trace = "".join(traceback.format_exception(value))
            client.log_text(run_id, trace, "error.txt")
        store.log_batches(client, run_id, tags=tags, metrics=metrics)

    # -- resolution ----------------------------------------------------------------------------
    def _tracking_uri(self, config: DictConfig) -> str:
        if self.tracking_uri is None:
            self.tracking_uri = resolve_tracking_uri(str(config.hydra.runtime.cwd))
        return self.tracking_uri

    def _experiment(self, config: DictConfig) -> str:
        return self.experiment or str(config.hydra.job.name)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_parent_open"] = False  # only the launching process ends the parent run
        return state
