"""Read a sqlite MLflow store with SQL through ADBC: Arrow tables straight into polars."""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from hydraflow.core.errors import RunNotFoundError
from hydraflow.core.loaders.tables import StoreTables, check_experiments, check_run_ids
from hydraflow.core.store import Store

_SAFE_ID = re.compile(r"^[0-9A-Za-z_-]+$")


def _read(cursor: object, query: str) -> pl.DataFrame:
    cursor.execute(query)  # type: ignore[attr-defined]
    return pl.from_arrow(cursor.fetch_arrow_table())  # type: ignore[attr-defined,return-value]


def _selection(
    cursor: object, store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> str:
    """The WHERE clause (on table ``runs``) choosing the runs to read; validates names and ids."""
    clauses = ["runs.lifecycle_stage = 'active'"]
    if experiments is not None:
        known = _read(
            cursor,
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'",
        )
        check_experiments(experiments, known["name"].to_list(), store.uri)
        ids = known.filter(pl.col("name").is_in(list(experiments)))["experiment_id"].to_list()
        clauses.append(f"runs.experiment_id IN ({','.join(str(int(i)) for i in ids) or 'NULL'})")
    if run_ids is not None:
        for run_id in run_ids:
            if not _SAFE_ID.match(run_id):
                raise RunNotFoundError(f"run {run_id!r} is not a valid MLflow run id.")
        quoted = ",".join(f"'{run_id}'" for run_id in run_ids) or "NULL"
        clauses.append(f"runs.run_uuid IN ({quoted})")
    return " AND ".join(clauses)


def load(
    store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> StoreTables:
    """Read runs, params, latest metrics and tags of the selected runs, column-wise."""
    import adbc_driver_sqlite.dbapi as adbc

    with adbc.connect(f"file:{store.location}?mode=ro") as conn, conn.cursor() as cursor:
        where = _selection(cursor, store, experiments, run_ids)
        chosen = f"SELECT run_uuid FROM runs WHERE {where}"
        runs = _read(
            cursor,
            "SELECT runs.run_uuid AS run_id, runs.name AS run_name, "
            "CAST(runs.experiment_id AS TEXT) AS experiment_id, experiments.name AS experiment, "
            "runs.status AS status, runs.start_time AS start_time, runs.end_time AS end_time, "
            "runs.artifact_uri AS artifact_uri FROM runs "
            "JOIN experiments ON runs.experiment_id = experiments.experiment_id "
            f"WHERE {where}",
        )
        params = _read(
            cursor,
            f"SELECT run_uuid AS run_id, key, value FROM params WHERE run_uuid IN ({chosen})",
        )
        metrics = _read(
            cursor,
            "SELECT run_uuid AS run_id, key, CAST(value AS REAL) AS value, is_nan "
            f"FROM latest_metrics WHERE run_uuid IN ({chosen})",
        )
        tags = _read(
            cursor,
            f"SELECT run_uuid AS run_id, key, value FROM tags WHERE run_uuid IN ({chosen})",
        )
    check_run_ids(run_ids, runs["run_id"].to_list() if run_ids else (), store.uri)
    metrics = metrics.select(
        "run_id",
        "key",
        pl.when(pl.col("is_nan").cast(pl.Boolean))
        .then(float("nan"))
        .otherwise(pl.col("value"))
        .cast(pl.Float64)
        .alias("value"),
    )
    return StoreTables(
        runs=runs.with_columns(pl.col("start_time", "end_time").cast(pl.Int64)),
        params=params.with_columns(pl.col("key", "value").cast(pl.String)),
        metrics=metrics,
        tags=tags.with_columns(pl.col("key", "value").cast(pl.String)),
        tracking_uri=store.uri,
    )
