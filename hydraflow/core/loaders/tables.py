"""The long tables every loader produces, and the checks they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from hydraflow.core.errors import ExperimentNotFoundError, RunNotFoundError, suggestion

RUNS_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "run_name": pl.String(),
    "experiment_id": pl.String(),
    "experiment": pl.String(),
    "status": pl.String(),
    "start_time": pl.Int64(),
    "end_time": pl.Int64(),
    "artifact_uri": pl.String(),
}
KV_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "key": pl.String(),
    "value": pl.String(),
}
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "key": pl.String(),
    "value": pl.Float64(),
}


# What the frame makes of one long table, done while the loader reads the others:
# ``widen(name, long table, runs)``, name one of ``params``, ``metrics``, ``tags``
Widen = Callable[[str, pl.DataFrame, pl.DataFrame], object]


@dataclass(frozen=True)
class Changes:
    """What changed in a store since the version a caller last loaded: ``run_ids``, the runs whose
    params, latest metrics or tags rows changed (new runs among them; changes to the ``runs`` table
    itself are not tracked here), and ``marks``, the ``hydraflow.key.*`` tag rows of the whole
    store (they rename params in every run)."""

    run_ids: pl.Series
    marks: pl.DataFrame


@dataclass
class StoreTables:
    """Runs (one row each, times in ms since the epoch) and long params / latest metrics / tags;
    ``wide``: what a loader's ``widen`` made of each long table (by name; may be empty).

    With ``changes`` (a load asked for what changed ``since`` a version, and the loader could tell),
    the long tables hold the rows of every run of the store, chosen or not."""

    runs: pl.DataFrame
    params: pl.DataFrame
    metrics: pl.DataFrame
    tags: pl.DataFrame
    wide: dict[str, object] = field(default_factory=dict)
    changes: Changes | None = None

    @classmethod
    def from_rows(
        cls,
        runs: Sequence[Mapping[str, object]],
        params: Iterable[tuple[str, str, str]],
        metrics: Iterable[tuple[str, str, float]],
        tags: Iterable[tuple[str, str, str]],
    ) -> StoreTables:
        """Build the tables from Python rows (file store and REST loaders)."""
        return cls(
            runs=pl.DataFrame(list(runs), schema=RUNS_SCHEMA, orient="row")
            if runs
            else pl.DataFrame(schema=RUNS_SCHEMA),
            params=pl.DataFrame(list(params), schema=KV_SCHEMA, orient="row"),
            metrics=pl.DataFrame(list(metrics), schema=METRICS_SCHEMA, orient="row"),
            tags=pl.DataFrame(list(tags), schema=KV_SCHEMA, orient="row"),
        )


def check_experiments(asked: Sequence[str] | None, known: Iterable[str], store_uri: str) -> None:
    """Raise a clear error for the first experiment name the store does not have."""
    names = list(known)
    for name in asked or ():
        if name not in names:
            raise ExperimentNotFoundError(
                f"experiment {name!r} not found in {store_uri}."
                + suggestion(name, names, "experiments")
            )


def check_run_ids(asked: Sequence[str] | None, found: Iterable[str], store_uri: str) -> None:
    """Raise a clear error for the first run id the store does not have (or that is deleted)."""
    present = set(found)
    for run_id in asked or ():
        if run_id not in present:
            raise RunNotFoundError(
                f"run {run_id!r} not found in {store_uri} (no active run with that id). Check the "
                "id, or pass the store that holds it: tracking_uri=... / MLFLOW_TRACKING_URI."
            )
