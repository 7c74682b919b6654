"""Read a sqlite MLflow store with SQL through ADBC: Arrow streams straight into polars.

The four tables are read concurrently, one connection each and at most a thread per core (the ADBC
driver releases the GIL while SQLite steps). When the chosen runs are most of the store, whole tables
are read and narrowed in polars: a plain scan is cheaper than SQLite's ``IN (subquery)`` probe per row;
those whole tables are kept, so the next load of the store reads only what changed
(:mod:`hydraflow.core.loaders.sqlite_cache`). ADBC's low-level API hands polars an Arrow C stream,
so pyarrow is never imported (it alone would add ~90 MB).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import polars as pl

from hydraflow.core._parallel import worker_count
from hydraflow.core.errors import HydraflowError, RunNotFoundError, StoreNotFoundError
from hydraflow.core.loaders.sqlite_cache import QUERIES, whole_tables
from hydraflow.core.loaders.tables import StoreTables, check_experiments, check_run_ids
from hydraflow.core.store import Store

_SAFE_ID = re.compile(r"^[0-9A-Za-z_-]+$")
T = TypeVar("T")
_LOCK_RETRIES = 40
_BATCH_ROWS = "65536"  # the driver's default (1024) makes many small Arrow batches


# A metric's value, NaN as NULL: value is NOT NULL in MLflow's schema, so NULL can only stand for NaN
METRIC_VALUE = "CASE WHEN is_nan THEN NULL ELSE CAST(value AS REAL) END AS value"


_LATEST = f"SELECT run_uuid AS run_id, key, {METRIC_VALUE} FROM latest_metrics"


def metric_value(column: pl.Expr) -> pl.Expr:
    """The ``METRIC_VALUE`` column read back: floats, NaN where SQL gave NULL."""
    return column.cast(pl.Float64).fill_null(float("nan"))


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal (SQLite has no backslash escapes: only quotes double)."""
    return "'" + value.replace("'", "''") + "'"


def _database(store: Store) -> Any:
    import adbc_driver_sqlite

    return adbc_driver_sqlite.connect(store.readonly_uri)


def _read(database: Any, query: str) -> pl.DataFrame:
    """One query on a new connection of ``database``, as a polars frame."""
    from adbc_driver_manager import AdbcConnection, AdbcStatement

    with AdbcConnection(database) as conn, AdbcStatement(conn) as statement:
        statement.set_options(**{"adbc.sqlite.query.batch_rows": _BATCH_ROWS})
        statement.set_sql_query(query)
        stream, _ = statement.execute_query()
        return pl.DataFrame(stream)


def read_sql(store: Store, query: str) -> pl.DataFrame:
    """Run one read-only ``query`` on the sqlite store, waiting out a writer's lock."""
    return _retrying(lambda: _with_database(store, lambda db: _read(db, query)), store)


def _with_database(store: Store, action: Callable[[Any], T]) -> T:
    with _database(store) as database:
        return action(database)


def _selection(
    database: Any, store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> str:
    """The WHERE clause (on table ``runs``) choosing the runs to read; validates names and ids."""
    clauses = ["runs.lifecycle_stage = 'active'"]
    if experiments is not None:
        known = _read(
            database, "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"
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


def _retrying(action: Callable[[], T], store: Store) -> T:
    """Run ``action``, waiting out a writer's lock (a sweep may be logging right now)."""
    import adbc_driver_manager

    for attempt in range(_LOCK_RETRIES):
        try:
            return action()
        except adbc_driver_manager.Error as exc:
            text = str(exc).lower()
            busy = "locked" in text or "busy" in text
            if busy and attempt < _LOCK_RETRIES - 1:
                time.sleep(0.05 * (attempt + 1))
                continue
            if busy:
                raise HydraflowError(
                    f"store {store.uri} stayed locked by a writer; try again."
                ) from None
            first = str(exc).strip().splitlines()[0]
            raise StoreNotFoundError(
                f"{store.location} is not a readable MLflow sqlite store ({first}). Pass the store "
                "that holds your runs: tracking_uri=... / --tracking-uri, or MLFLOW_TRACKING_URI."
            ) from None
    raise AssertionError("unreachable")


def load(
    store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> StoreTables:
    """Read runs, params, latest metrics and tags of the selected runs, column-wise."""
    return _retrying(
        lambda: _with_database(store, lambda db: _load(db, store, experiments, run_ids)), store
    )


def _load(
    database: Any, store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> StoreTables:
    where = _selection(database, store, experiments, run_ids)
    counts = _read(
        database,
        f"SELECT COUNT(*) AS total, SUM(CASE WHEN {where} THEN 1 ELSE 0 END) AS chosen FROM runs",
    ).row(0)
    total, chosen = int(counts[0] or 0), int(counts[1] or 0)
    scan = chosen * 2 >= total  # most of the store: full scans, then a polars semi-join
    narrow = f" WHERE run_uuid IN (SELECT run_uuid FROM runs WHERE {where})"
    queries = {
        **{name: sql + narrow for name, sql in QUERIES.items()},
        "metrics": _LATEST + narrow,
        "runs": "SELECT runs.run_uuid AS run_id, runs.name AS run_name, "
        "CAST(runs.experiment_id AS TEXT) AS experiment_id, experiments.name AS experiment, "
        "runs.status AS status, runs.start_time AS start_time, runs.end_time AS end_time, "
        "runs.artifact_uri AS artifact_uri FROM runs "
        f"JOIN experiments ON runs.experiment_id = experiments.experiment_id WHERE {where}",
    }
    with ThreadPoolExecutor(max_workers=worker_count(len(queries))) as pool:
        if scan:  # the whole tables, from the snapshot of the last load when there is one
            runs_job = pool.submit(_read, database, queries["runs"])
            frames = dict(whole_tables(store, lambda sql: _read(database, sql), pool, _LATEST))
            frames["runs"] = runs_job.result()
        else:
            futures = {name: pool.submit(_read, database, sql) for name, sql in queries.items()}
            frames = {name: future.result() for name, future in futures.items()}
    runs = frames["runs"]
    check_run_ids(run_ids, runs["run_id"].to_list() if run_ids else (), store.uri)
    ids = runs.select("run_id")

    def narrowed(name: str, value: pl.Expr) -> pl.DataFrame:
        frame = frames[name].select(pl.col("run_id", "key").cast(pl.String), value.alias("value"))
        return frame.join(ids, on="run_id", how="semi") if scan and chosen < total else frame

    return StoreTables(
        runs=runs,
        params=narrowed("params", pl.col("value").cast(pl.String)),
        metrics=narrowed("metrics", metric_value(pl.col("value"))),
        tags=narrowed("tags", pl.col("value").cast(pl.String)),
    )
