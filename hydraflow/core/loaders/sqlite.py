"""Read a sqlite MLflow store with SQL through ADBC: Arrow streams straight into polars.

The tables are read concurrently by at most a thread per core, each thread with one connection for
all its queries (the ADBC driver releases the GIL while SQLite steps). The first queries (how many
runs are chosen, the runs themselves, the experiment names) run together; when the chosen runs are
most of the store, whole tables are then read and narrowed in polars: a plain scan is cheaper than
SQLite's ``IN (subquery)`` probe per row; those whole tables are kept, so the next load of the store
reads only what changed (:mod:`hydraflow.core.loaders.sqlite_cache`). ADBC's low-level API hands
polars an Arrow C stream, so pyarrow is never imported (it alone would add ~90 MB)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import polars as pl

from hydraflow.core._parallel import worker_count
from hydraflow.core.errors import HydraflowError, RunNotFoundError, StoreNotFoundError
from hydraflow.core.loaders.sqlite_cache import QUERIES, TOPS, Version, whole_tables
from hydraflow.core.loaders.tables import StoreTables, Widen, check_experiments, check_run_ids
from hydraflow.core.store import Store

_SAFE_ID = re.compile(r"^[0-9A-Za-z_-]+$")
T = TypeVar("T")
_LOCK_RETRIES = 40
# One Arrow batch per table of up to a million rows: the driver's default (1024) makes many small
# batches, and polars would copy every string again to join them into one chunk
_BATCH_ROWS = str(1 << 20)
# A scan reads each page once: a small page cache per connection (SQLite's default is 2 MB) saves
# the memory it would take, which a fresh process pays for in page faults (-900 of ~10,000 faults)
_SMALL_CACHE = "PRAGMA cache_size = -256"


# A metric's value, NaN as NULL: value is NOT NULL in MLflow's schema, so NULL can only stand for NaN
METRIC_VALUE = "CASE WHEN is_nan THEN NULL ELSE CAST(value AS REAL) END AS value"


_LATEST = f"SELECT run_uuid AS run_id, key, {METRIC_VALUE} FROM latest_metrics"
_RUNS = (
    "SELECT run_uuid AS run_id, name AS run_name, experiment_id, status, start_time, end_time, "
    "artifact_uri FROM runs WHERE "
)
_EXPERIMENTS = "SELECT experiment_id, name AS experiment FROM experiments"


def metric_value(column: pl.Expr) -> pl.Expr:
    """The ``METRIC_VALUE`` column read back: floats, NaN where SQL gave NULL."""
    return column.cast(pl.Float64).fill_null(float("nan"))


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal (SQLite has no backslash escapes: only quotes double)."""
    return "'" + value.replace("'", "''") + "'"


def _database(store: Store) -> Any:
    import adbc_driver_sqlite

    return adbc_driver_sqlite.connect(store.readonly_uri)


def _query(conn: Any, query: str) -> pl.DataFrame:
    """One query on an open ADBC connection, as a polars frame (Arrow C stream, no copy in Python)."""
    from adbc_driver_manager import AdbcStatement

    with AdbcStatement(conn) as statement:
        statement.set_options(**{"adbc.sqlite.query.batch_rows": _BATCH_ROWS})
        statement.set_sql_query(query)
        stream, _ = statement.execute_query()
        return pl.DataFrame(stream)


class Reader:
    """Runs queries on one sqlite database from any thread: one connection per thread, opened on
    its first query and kept for the next ones (a connection parses the schema and fills its page
    cache once), all closed by :meth:`close`."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self._local = threading.local()
        self._opened: list[Any] = []
        self._guard = threading.Lock()

    def __call__(self, query: str) -> pl.DataFrame:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            from adbc_driver_manager import AdbcConnection

            conn = AdbcConnection(self._database)
            with self._guard:
                self._opened.append(conn)
            self._local.conn = conn
            _query(conn, _SMALL_CACHE)
        return _query(conn, query)

    def close(self) -> None:
        """Close every connection opened (before the database itself is closed)."""
        with self._guard:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


def read_sql(store: Store, query: str) -> pl.DataFrame:
    """Run one read-only ``query`` on the sqlite store, waiting out a writer's lock."""
    return _retrying(lambda: _with_reader(store, lambda read: read(query)), store)


def _with_reader(store: Store, action: Callable[[Reader], T]) -> T:
    with _database(store) as database:
        read = Reader(database)
        try:
            return action(read)
        finally:
            read.close()


def _selection(
    store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> str:
    """The WHERE clause (on table ``runs``) choosing the runs to read; validates run ids (the
    experiment names are checked against the store by :func:`_check_experiments`)."""
    clauses = ["runs.lifecycle_stage = 'active'"]
    if experiments is not None:
        names = ",".join(sql_text(name) for name in experiments) or "NULL"
        clauses.append(
            "runs.experiment_id IN (SELECT experiment_id FROM experiments "
            f"WHERE lifecycle_stage = 'active' AND name IN ({names}))"
        )
    if run_ids is not None:
        for run_id in run_ids:
            if not _SAFE_ID.match(run_id):
                raise RunNotFoundError(f"run {run_id!r} is not a valid MLflow run id.")
        quoted = ",".join(f"'{run_id}'" for run_id in run_ids) or "NULL"
        clauses.append(f"runs.run_uuid IN ({quoted})")
    return " AND ".join(clauses)


def _read_runs(read: Reader, where: str) -> pl.DataFrame:
    """The chosen runs with their experiment's name (looked up here: in SQL it is a lookup per
    run, and the id a text cast per run; a polars join would hash every run for a few names)."""
    names = read(_EXPERIMENTS)
    runs = read(_RUNS + where)
    name = pl.col("experiment_id").replace_strict(
        names["experiment_id"], names["experiment"], default=None
    )
    runs = runs.with_columns(pl.col("experiment_id").cast(pl.String), name.alias("experiment"))
    return runs.drop_nulls("experiment") if runs["experiment"].null_count() else runs


def _check_experiments(read: Reader, store: Store, experiments: Sequence[str]) -> None:
    known = read("SELECT name FROM experiments WHERE lifecycle_stage = 'active'")
    check_experiments(experiments, known["name"].to_list(), store.uri)


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
    store: Store,
    experiments: Sequence[str] | None,
    run_ids: Sequence[str] | None,
    widen: Widen | None = None,
    since: Version | None = None,
) -> StoreTables:
    """Read runs, params, latest metrics and tags of the selected runs, column-wise; ``widen``
    (see :class:`StoreTables`) runs on each long table in the thread that read it; ``since``: see
    :func:`hydraflow.core.loaders.load_tables`."""
    return _retrying(
        lambda: _with_reader(
            store, lambda read: _load(read, store, experiments, run_ids, widen, since)
        ),
        store,
    )


def _load(
    read: Reader,
    store: Store,
    experiments: Sequence[str] | None,
    run_ids: Sequence[str] | None,
    widen: Widen | None,
    since: Version | None,
) -> StoreTables:
    where = _selection(store, experiments, run_ids)
    narrow = f" WHERE run_uuid IN (SELECT run_uuid FROM runs WHERE {where})"
    queries = {
        **{name: sql + narrow for name, sql in QUERIES.items()},
        "metrics": _LATEST + narrow,
    }
    # One thread per core, each with its connection; the runs and the check of the experiment
    # names are read while the counts decide how to read the rest
    with ThreadPoolExecutor(max_workers=worker_count(len(queries) + 1)) as pool:
        counts_job = pool.submit(
            read,
            f"SELECT COUNT(*) AS total, SUM(CASE WHEN {where} THEN 1 ELSE 0 END) AS chosen, "
            f"{TOPS} FROM runs",
        )
        runs_job = pool.submit(_read_runs, read, where)
        check_job = (
            pool.submit(_check_experiments, read, store, experiments)
            if experiments is not None
            else None
        )
        counts = counts_job.result().row(0, named=True)
        total, chosen = int(counts["total"] or 0), int(counts["chosen"] or 0)
        scan = chosen * 2 >= total  # most of the store: full scans, then a polars semi-join
        values = {
            "params": pl.col("value").cast(pl.String),
            "metrics": metric_value(pl.col("value")),
            "tags": pl.col("value").cast(pl.String),
        }

        def finish(name: str, read_frame: pl.DataFrame) -> tuple[pl.DataFrame, object]:
            # A table's rows of the chosen runs, then widened; the runs were submitted first, so
            # waiting for them here never waits for a job queued behind this one
            runs = runs_job.result()
            frame = read_frame.select(
                pl.col("run_id", "key").cast(pl.String), values[name].alias("value")
            )
            if scan and chosen < total:
                frame = frame.join(runs.select("run_id"), on="run_id", how="semi")
            return frame, widen(name, frame, runs) if widen is not None else None

        changes = None
        done: dict[str, tuple[pl.DataFrame, object]]
        if scan:  # the whole tables, from the snapshot of the last load when there is one
            whole = whole_tables(store, read, pool, _LATEST, counts, finish, since)
            if isinstance(whole, tuple):  # every run's rows, and what changed since
                rows, changes = whole
                done = {name: (table, None) for name, table in rows.items()}
            else:
                done = whole
        else:
            futures = {
                name: pool.submit(lambda name, sql: finish(name, read(sql)), name, sql)
                for name, sql in queries.items()
            }
            done = {name: future.result() for name, future in futures.items()}
        if check_job is not None:
            check_job.result()
        runs = runs_job.result()
    check_run_ids(run_ids, runs["run_id"].to_list() if run_ids else (), store.uri)
    return StoreTables(
        runs=runs,
        params=done["params"][0],
        metrics=done["metrics"][0],
        tags=done["tags"][0],
        wide={name: part for name, (_, part) in done.items() if part is not None},
        changes=changes,
    )
