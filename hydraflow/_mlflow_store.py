"""MLflow store helpers of the Hydra callback and the ``flow`` sweeper's resume.

Kept apart from :mod:`hydraflow.callbacks` so that the callback reads as the DESIGN's sweep steps and
this module holds the MLflow mechanics: experiments, batched params, retries on a busy sqlite file.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from hydraflow.conventions import (
    MAX_PARAM_VALUE_LENGTH,
    TAG_CONFIG_HASH,
    TAG_END_REASON,
    TAG_JOB_NUM,
    TAG_KEY_PREFIX,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
    TAG_TOTAL_COST,
    artifact_location_for,
    sanitize_key,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch call
_RETRIES = 8


def retry_busy(action: Callable[[], _T]) -> _T:
    """Run ``action``, retrying while a sqlite store reports that it is locked by another writer."""
    for attempt in range(_RETRIES):
        try:
            return action()
        except Exception as error:
            if "locked" not in str(error).lower() or attempt == _RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while (as it was afterwards).

    Importing mlflow and its SQL store creates ~a million objects: the collector's thresholds
    trigger five full collections over the growing heap on the way, 0.5 s of the 1.6 s it takes
    (0.95 → 0.74 s for ``mlflow``, 0.61 → 0.33 s for its SQL store), and imports leave next to no
    cyclic garbage to find.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def client_for(tracking_uri: str, *, create: bool = True) -> MlflowClient:
    """A client of ``tracking_uri`` with its store open; a new sqlite file is created (from the
    migrated template of :mod:`hydraflow._store_template`, else migrated by MLflow) unless not
    ``create``. The first call in a process imports mlflow (the fluent API too) and its store."""
    with _collector_paused():
        import mlflow  # noqa: F401  # the job's run is started through the fluent API
        from mlflow.tracking import MlflowClient

        from hydraflow._store_template import create_from_template

        if create:
            create_from_template(tracking_uri)
        client = MlflowClient(tracking_uri)
        if create or tracking_uri not in _OPENED:
            retry_busy(lambda: client.search_experiments(max_results=1))  # forces the store
            _OPENED.add(tracking_uri)
    return client


_OPENED: set[str] = set()  # the stores client_for opened in this process


def ensure_experiment(
    client: MlflowClient, name: str, tracking_uri: str, *, restore: bool = True
) -> str:
    """The id of experiment ``name``, created (artifacts beside a sqlite store) if needed.

    A deleted experiment is restored when ``restore``; otherwise its id is returned as it is.
    """
    from mlflow.exceptions import MlflowException

    experiment = retry_busy(lambda: client.get_experiment_by_name(name))
    if experiment is None:
        try:
            return retry_busy(
                lambda: client.create_experiment(
                    name, artifact_location=artifact_location_for(tracking_uri)
                )
            )
        except MlflowException:  # created by someone else in the meantime
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if restore and experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def params_and_key_tags(
    flat: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Split a flattened config into (params, key tags, over-long values).

    Keys MLflow rejects are sanitised and the original kept in ``hydraflow.key.<sanitised>``; values
    longer than MLflow accepts are returned apart (the caller stores them whole as an artifact).
    """
    params: dict[str, str] = {}
    key_tags: dict[str, str] = {}
    too_long: dict[str, str] = {}
    for key, value in flat.items():
        if len(value) > MAX_PARAM_VALUE_LENGTH:
            too_long[key] = value
            continue
        safe = sanitize_key(key)
        if safe != key:
            key_tags[TAG_KEY_PREFIX + safe] = key
        params[safe] = value
    return params, key_tags, too_long


def log_batches(
    client: MlflowClient,
    run_id: str,
    params: Mapping[str, str] = {},
    tags: Mapping[str, str] = {},
    metrics: Mapping[str, float] = {},
) -> None:
    """Log params, tags and metrics in as few batches as MLflow accepts (one store write each)."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    param_chunks = list(_chunks([Param(k, v) for k, v in params.items()]))
    tag_chunks = list(_chunks([RunTag(k, v) for k, v in tags.items()]))
    metric_chunks = list(_chunks([Metric(k, v, now, 0) for k, v in metrics.items()]))
    for index in range(max(len(param_chunks), len(tag_chunks), len(metric_chunks))):
        retry_busy(
            partial(
                client.log_batch,
                run_id,
                params=param_chunks[index] if index < len(param_chunks) else [],
                tags=tag_chunks[index] if index < len(tag_chunks) else [],
                metrics=metric_chunks[index] if index < len(metric_chunks) else [],
            )
        )


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def search_all(
    client: MlflowClient, experiment_id: str | Sequence[str], filter_string: str
) -> list[Run]:
    """Every run of an experiment (or of several) matching ``filter_string`` (all pages)."""
    ids = [experiment_id] if isinstance(experiment_id, str) else list(experiment_id)
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = retry_busy(
            partial(
                client.search_runs,
                ids,
                filter_string=filter_string,
                max_results=1000,
                page_token=token,
            )
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sweep_summary(
    client: MlflowClient, experiment_id: str, parent_run_id: str
) -> tuple[dict[str, float], dict[str, str]]:
    """The sweep's summary metrics from its child runs: ``jobs``, ``completed``, ``failed``,
    ``killed`` (the newest run of each job number counts: a job re-run by resume counts once) and
    ``cost`` (every run, re-runs included: they were paid for); and the ``flow.total_cost`` tag when
    a Flow task ran any of them."""
    children = search_all(client, experiment_id, f"tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'")
    newest: dict[str, Run] = {}
    for run in sorted(children, key=lambda r: r.info.start_time or 0):
        newest[run.data.tags.get(TAG_JOB_NUM, run.info.run_id)] = run
    statuses = [run.info.status for run in newest.values()]
    costs = [run.data.tags[TAG_TOTAL_COST] for run in children if TAG_TOTAL_COST in run.data.tags]
    cost = sum(float(value or 0) for value in costs)
    metrics = {
        "jobs": len(newest),
        "completed": statuses.count("FINISHED"),
        "failed": statuses.count("FAILED"),
        "killed": statuses.count("KILLED"),
        "cost": cost,
    }
    return metrics, ({TAG_TOTAL_COST: f"{cost:.4f}"} if costs else {})


def end_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    """End a run with ``status`` now; ``reason`` (why it ended from outside) goes to
    ``hydraflow.end_reason``. Metrics, params and artifacts it has are kept."""
    if reason is not None:
        log_batches(client, run_id, tags={TAG_END_REASON: reason[:5000]})
    end_time = int(time.time() * 1000)
    retry_busy(partial(client.set_terminated, run_id, status, end_time))


def previous_sweep(client: MlflowClient, experiment_id: str, key: str) -> Run | None:
    """The newest ended parent run of the same sweep (``hydraflow.sweep_key``), if any."""
    from hydraflow.conventions import TAG_SWEEP_KEY

    runs = search_all(
        client,
        experiment_id,
        f"tags.`{TAG_ROLE}` = 'sweep' and tags.`{TAG_SWEEP_KEY}` = '{key}' "
        "and attributes.status != 'RUNNING'",
    )
    return max(runs, key=lambda r: r.info.start_time or 0, default=None)


def continue_run(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Make an ended run RUNNING again (its metrics stay), with ``tags`` set and no end reason."""
    run = retry_busy(partial(client.get_run, run_id))
    if TAG_END_REASON in run.data.tags:
        retry_busy(partial(client.delete_tag, run_id, TAG_END_REASON))
    log_batches(client, run_id, tags=tags)
    retry_busy(partial(client.update_run, run_id, "RUNNING"))


def finished_job_runs(tracking_uri: str, experiment: str) -> dict[str, Run]:
    """FINISHED job runs of ``experiment`` by their config hash (newest wins); empty if none."""
    client = client_for(tracking_uri)
    found = retry_busy(lambda: client.get_experiment_by_name(experiment))
    if found is None:
        return {}
    runs = search_all(
        client,
        found.experiment_id,
        f"tags.`{TAG_ROLE}` = 'job' and attributes.status = 'FINISHED'",
    )
    by_hash: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        digest = run.data.tags.get(TAG_CONFIG_HASH)
        if digest:
            by_hash[digest] = run
    return by_hash


def json_or_none(value: Any) -> str | None:
    """``value`` as JSON text, or ``None`` when it is not JSON-serialisable."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return None


def fail_running_job_runs(
    tracking_uri: str, experiment: str, sweep_id: str, reasons: Mapping[int, str]
) -> int:
    """End as FAILED the still-RUNNING job runs of ``sweep_id`` whose job number is in ``reasons``.

    A job whose process was killed never reaches ``on_job_end``; the launcher calls this so that
    its run does not stay RUNNING forever. Returns how many runs were ended.
    """
    from hydraflow.conventions import TAG_ERROR, TAG_JOB_NUM, TAG_SWEEP_ID

    client = client_for(tracking_uri)
    found = retry_busy(lambda: client.get_experiment_by_name(experiment))
    if found is None:
        return 0
    runs = search_all(
        client,
        found.experiment_id,
        f"tags.`{TAG_SWEEP_ID}` = '{sweep_id}' and attributes.status = 'RUNNING'",
    )
    ended = 0
    for run in runs:
        num = run.data.tags.get(TAG_JOB_NUM)
        if num is None or int(num) not in reasons:
            continue
        log_batches(client, run.info.run_id, tags={TAG_ERROR: reasons[int(num)][:5000]})
        retry_busy(partial(client.set_terminated, run.info.run_id, "FAILED"))
        ended += 1
    return ended


def replace_earlier_job_runs(
    client: MlflowClient, experiment_id: str, sweep_id: str, job_num: int
) -> int:
    """Delete the job's runs that an earlier start of it left ``RUNNING`` (its task died, or its
    scheduler requeued it): the job starting again gives the sweep's one run of this job.

    Each is first ended ``KILLED`` with ``hydraflow.end_reason`` saying why, so a deleted run read
    by id still tells its story. Returns how many runs were replaced.
    """
    from hydraflow.conventions import TAG_SWEEP_ID

    runs = search_all(
        client,
        experiment_id,
        f"tags.`{TAG_SWEEP_ID}` = '{sweep_id}' and tags.`{TAG_JOB_NUM}` = '{job_num}' "
        "and attributes.status = 'RUNNING'",
    )
    for run in runs:
        end_run(client, run.info.run_id, "KILLED", "replaced by a later start of the same job")
        retry_busy(partial(client.delete_run, run.info.run_id))
    return len(runs)
