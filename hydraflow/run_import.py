"""Copy MLflow runs from one store into another: how remote jobs land in the user's store.

A job on a remote instance logs into a store on that instance (a sqlite file in its output folder), so a
dropped connection loses nothing. When the job's folder comes home, :func:`import_runs` copies its runs
into the user's store — params, every metric step, tags, status, times and artifacts. Importing is
idempotent: a run already imported (tag ``hydraflow.imported_from``) is not copied twice, so a retried
download or a re-run of the import never shows one job as two.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Metric, Param, Run
from mlflow.tracking import MlflowClient

from hydraflow._mlflow_store import ensure_experiment
from hydraflow.conventions import default_tracking_uri

__all__ = ["TAG_IMPORTED_FROM", "import_runs"]

TAG_IMPORTED_FROM = "hydraflow.imported_from"
_T = TypeVar("_T")
# MLflow's log_batch limits per call.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _already_imported(client: MlflowClient, experiment_id: str, source_run_id: str) -> str | None:
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_IMPORTED_FROM}` = '{source_run_id}'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _rebase(text: str, moved: tuple[str, Path] | None) -> str:
    """``text`` with a leading moved folder (a path or its ``file://`` URI) replaced by the new one."""
    if moved is None:
        return text
    old, new = moved
    for prefix, replacement in ((Path(old).as_uri(), new.resolve().as_uri()), (old, str(new))):
        if text == prefix or text.startswith(prefix.rstrip("/") + "/"):
            return replacement + text[len(prefix.rstrip("/")) :]
    return text


def _local_artifacts(run: Run, moved: tuple[str, Path] | None) -> Path | None:
    """The run's artifact folder on this machine when its store came from elsewhere."""
    if moved is None or not run.info.artifact_uri:
        return None
    rebased = _rebase(run.info.artifact_uri, moved)
    if not rebased.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(rebased).path))


def _copy_run(
    src: MlflowClient,
    dst: MlflowClient,
    run: Run,
    experiment_id: str,
    moved: tuple[str, Path] | None = None,
) -> str:
    tags = {k: _rebase(v, moved) for k, v in run.data.tags.items() if k != "mlflow.runName"}
    tags[TAG_IMPORTED_FROM] = run.info.run_id
    new = dst.create_run(
        experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name
    )
    new_id = new.info.run_id
    params = [Param(k, v) for k, v in run.data.params.items()]
    metrics = [
        Metric(m.key, m.value, m.timestamp, m.step)
        for key in run.data.metrics
        for m in src.get_metric_history(run.info.run_id, key)
    ]
    for chunk_p in _chunks(params, _MAX_PARAMS):
        dst.log_batch(new_id, params=list(chunk_p))
    for chunk_m in _chunks(metrics, _MAX_METRICS):
        dst.log_batch(new_id, metrics=list(chunk_m))
    local_artifacts = _local_artifacts(run, moved)
    if local_artifacts is not None:
        if local_artifacts.is_dir() and any(local_artifacts.iterdir()):
            dst.log_artifacts(new_id, str(local_artifacts))
    else:
        _copy_artifacts(src, dst, run.info.run_id, new_id)
    dst.set_terminated(new_id, status=run.info.status, end_time=run.info.end_time)
    return new_id


def _copy_artifacts(src: MlflowClient, dst: MlflowClient, run_id: str, new_id: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if src.list_artifacts(run_id):
            local = src.download_artifacts(run_id, "", tmp)
            dst.log_artifacts(new_id, local)


def import_runs(
    source_uri: str,
    dest_uri: str,
    *,
    experiment_names: Iterable[str] | None = None,
    moved_from: str | None = None,
    moved_to: Path | None = None,
) -> dict[str, str]:
    """Copy every run of ``source_uri`` into ``dest_uri``, experiment by experiment name.

    Args:
        source_uri: Tracking URI of the store the job logged into (e.g. ``sqlite:///.../mlflow.db``).
        dest_uri: The user's tracking URI.
        experiment_names: Only these experiments (default: every experiment with runs).
            moved_from: The folder the source store was written in, when it has been copied
            here from elsewhere (a remote job's output folder): artifact paths and tags under it
            are read from / rewritten to ``moved_to`` (default: the store's folder here).
        moved_to: Where ``moved_from`` is on this machine.

    Returns:
        ``{source_run_id: dest_run_id}`` for every run, including ones imported earlier.
    """
    src, dst = MlflowClient(source_uri), MlflowClient(dest_uri)
    moved = None
    if moved_from is not None and source_uri.startswith("sqlite:///"):
        moved = (moved_from, moved_to or Path(source_uri.removeprefix("sqlite:///")).parent)
    wanted = set(experiment_names) if experiment_names is not None else None
    mapping: dict[str, str] = {}
    for experiment in src.search_experiments():
        if wanted is not None and experiment.name not in wanted:
            continue
        runs = src.search_runs([experiment.experiment_id], max_results=50_000)
        if not runs:
            continue
        dest_experiment = ensure_experiment(dst, experiment.name, dest_uri, restore=False)
        for run in runs:
            existing = _already_imported(dst, dest_experiment, run.info.run_id)
            mapping[run.info.run_id] = existing or _copy_run(src, dst, run, dest_experiment, moved)
    return mapping


def store_uri_for(folder: Path) -> str:
    """The tracking URI of the per-job store kept in ``folder`` (``mlflow.db`` inside it)."""
    return default_tracking_uri(folder)
