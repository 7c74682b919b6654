"""Repeated loads of one sqlite store in a process (a notebook) pay for what changed only.

A :class:`Snapshot` per store file keeps the whole ``params``, ``tags`` and ``latest_metrics`` tables
as read last time, with the high-water marks of the tables MLflow only appends to. On the next load:

- the store file unchanged (:func:`store_version`: size, mtime and SQLite's change counter of the
  database, size and mtime of its ``-wal`` file) → the snapshot as is, and the very frame of the
  last load of the same selection (:func:`recall`; a RunCollection's frame is never changed in
  place);
- else, how each table is brought up to date, and why that is correct:

  - ``runs`` is re-read whole by the loader every time (it is small): names, status, end times,
    deletions (``lifecycle_stage``) and moves between experiments are always current. If a run with
    params or metrics in the snapshot is gone from the table (``mlflow gc`` deleted it for good,
    with its rows, whose rowids SQLite may then reuse), everything is read again;
  - ``params`` only ever gets rows (MLflow refuses to change a param): the rows past the highest
    rowid seen are appended;
  - ``latest_metrics`` is updated in place, but every metric MLflow logs also appends a row to
    ``metrics`` in the same transaction: the runs with new ``metrics`` rows get their
    ``latest_metrics`` rows read again;
  - both tables' row counts must then match the store's, else (rows deleted, or logged while we
    read) everything is read again;
  - ``tags`` are updated in place with no such trace (``set_tag``): they are read again whole.

Only the sqlite store has a snapshot; file stores and tracking servers are read in full each time.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

from hydraflow.core.store import Store

Reader = Callable[[str], pl.DataFrame]
T = TypeVar("T")
Version = tuple[int, ...]

QUERIES = {  # largest first: with fewer threads than queries, the work still balances
    "params": "SELECT run_uuid AS run_id, key, value FROM params",
    "tags": "SELECT run_uuid AS run_id, key, value FROM tags",
}
RUN_IDS = "SELECT run_uuid AS run_id FROM runs"
_TEXT: dict[str, pl.DataType] = {"run_id": pl.String(), "key": pl.String(), "value": pl.String()}
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "params": _TEXT,
    "tags": _TEXT,
    "metrics": {**_TEXT, "value": pl.Float64()},
}


def store_version(store: Store) -> Version:
    """What changes whenever a transaction commits to the store (in rollback or WAL mode)."""
    numbers: list[int] = []
    for path in (store.location, f"{store.location}-wal"):
        try:
            info = os.stat(path)
        except OSError:
            numbers += [-1, -1]
            continue
        numbers += [info.st_size, info.st_mtime_ns]
    try:
        with open(store.location, "rb") as handle:
            header = handle.read(28)
        numbers.append(int.from_bytes(header[24:28], "big"))  # the file change counter
    except OSError:
        numbers.append(-1)
    return tuple(numbers)


@dataclass
class Snapshot:
    """The whole long tables of one store as of ``version``, and what was seen of them."""

    version: Version
    tables: dict[str, pl.DataFrame]  # params, tags, metrics (latest)
    tops: dict[str, int]  # params, metrics: the highest rowid before they were read


_SNAPSHOTS: dict[str, Snapshot] = {}
_GUARD = threading.Lock()


def _like(frame: pl.DataFrame, model: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``model``'s column types (an empty SQL result comes back typed Int64)."""
    return frame.cast({c: model.schema[c] for c in frame.columns})


# The highest rowid of the append-only tables (a b-tree's last entry: no scan), as columns of a
# query the caller runs before reading the data (rows logged meanwhile are seen again, never missed)
TOPS = ", ".join(
    f"(SELECT COALESCE(MAX(rowid), 0) FROM {t}) AS {t}_top" for t in ("params", "metrics")
)


def _tops(row: dict[str, Any]) -> dict[str, int]:
    """The :data:`TOPS` columns of a query's first row."""
    return {t: int(row[f"{t}_top"]) for t in ("params", "metrics")}


def _fresh(
    read: Reader,
    pool: Executor,
    metrics_query: str,
    version: Version,
    tops: dict[str, int],
    then: Callable[[str, pl.DataFrame], T],
) -> tuple[Snapshot, dict[str, T]]:
    """Every table read whole; ``then`` runs on each in the thread that read it, as it arrives.

    ``params``, the largest table, is read in two halves by rowid (a range of its b-tree each),
    so that both threads share it; the thread reading the second half joins the first to it.
    """

    def read_then(
        name: str, sql: str, first: Future[pl.DataFrame] | None
    ) -> tuple[pl.DataFrame, T]:
        table = read(sql).cast(SCHEMAS[name])  # type: ignore[arg-type]
        if first is not None:  # submitted before this job: it has run, or is running elsewhere
            table = pl.concat([first.result(), table])
        return table, then(name, table)

    half = tops["params"] // 2
    params = QUERIES["params"]
    first = pool.submit(lambda: read(f"{params} WHERE rowid <= {half}").cast(SCHEMAS["params"]))  # type: ignore[arg-type]
    queries = {
        "params": (f"{params} WHERE rowid > {half}", first),
        "tags": (QUERIES["tags"], None),
        "metrics": (metrics_query, None),
    }
    futures = {name: pool.submit(read_then, name, *query) for name, query in queries.items()}
    done = {name: future.result() for name, future in futures.items()}
    tables = {name: table for name, (table, _) in done.items()}
    return Snapshot(version, tables, tops), {name: result for name, (_, result) in done.items()}


def _update(
    snap: Snapshot,
    read: Reader,
    pool: Executor,
    metrics_query: str,
    version: Version,
    tops: dict[str, int],
) -> Snapshot | None:
    """The snapshot brought up to date, or None when only a full read is safe."""
    futures = {
        "run_ids": pool.submit(read, RUN_IDS),
        "tags": pool.submit(read, QUERIES["tags"]),
        "params": pool.submit(read, f"{QUERIES['params']} WHERE rowid > {snap.tops['params']}"),
        "touched": pool.submit(
            read,
            "SELECT DISTINCT run_uuid AS run_id FROM metrics "
            f"WHERE rowid > {snap.tops['metrics']} AND rowid <= {tops['metrics']}",
        ),
        "counts": pool.submit(
            read,
            "SELECT (SELECT COUNT(*) FROM params) AS params, "
            "(SELECT COUNT(*) FROM latest_metrics) AS metrics",
        ),
    }
    got = {name: future.result() for name, future in futures.items()}
    known = pl.concat([snap.tables[t].select("run_id") for t in ("params", "metrics")]).unique()
    if known.join(_like(got["run_ids"], known), on="run_id", how="anti").height:
        return None  # runs deleted for good (mlflow gc): their rows are gone, rowids reused
    params = pl.concat([snap.tables["params"], _like(got["params"], snap.tables["params"])])
    metrics = snap.tables["metrics"]
    touched = got["touched"]
    if touched.height:
        listed = ",".join(f"'{r}'" for r in touched["run_id"].to_list())
        fresh = read(f"{metrics_query} WHERE run_uuid IN ({listed})")
        kept = metrics.join(_like(touched, metrics), on="run_id", how="anti")
        metrics = pl.concat([kept, _like(fresh, kept)])
    counts = got["counts"].row(0, named=True)
    if counts["params"] != params.height or counts["metrics"] != metrics.height:
        return None  # rows deleted, or logged while we read: read everything
    tables = {"params": params, "tags": got["tags"].cast(SCHEMAS["tags"]), "metrics": metrics}  # type: ignore[arg-type]
    return Snapshot(version, tables, tops)


def whole_tables(
    store: Store,
    read: Reader,
    pool: Executor,
    metrics_query: str,
    first_row: dict[str, Any],
    then: Callable[[str, pl.DataFrame], T],
) -> dict[str, T]:
    """``then(name, table)`` of ``params``, ``tags`` and ``metrics`` (latest), each table whole as
    the store has it, read incrementally (see above); ``then`` runs in ``pool``, on a table read
    afresh in the thread that read it as soon as it arrives (the next step overlaps the other reads).

    ``read`` runs one query (any thread); ``metrics_query`` selects ``run_id, key, value`` of
    ``latest_metrics``; ``pool`` runs the reads concurrently; ``first_row`` is the first row of a
    query with the :data:`TOPS` columns, run before this call.
    """
    tops = _tops(first_row)
    version = store_version(store)  # before reading: a later write makes the next load look again
    with _GUARD:
        snap = _SNAPSHOTS.get(store.location)
    if snap is not None and snap.version == version:
        updated: Snapshot | None = snap
    else:
        updated = _update(snap, read, pool, metrics_query, version, tops) if snap else None
    if updated is None:
        updated, results = _fresh(read, pool, metrics_query, version, tops, then)
    else:
        futures = {name: pool.submit(then, name, table) for name, table in updated.tables.items()}
        results = {name: future.result() for name, future in futures.items()}
    with _GUARD:
        _SNAPSHOTS[store.location] = updated
    return results


_RESULTS: OrderedDict[tuple[Hashable, ...], tuple[Version, Any]] = OrderedDict()
_MAX_RESULTS = 8


def recall(store: Store, selection: Hashable) -> tuple[Version, Any]:
    """The store's version now, and what :func:`keep` stored for ``selection`` at that very version
    (``None`` when the store changed since, or nothing was kept). Read the version before loading:
    a write during the load then shows as a newer version next time."""
    version = store_version(store)
    with _GUARD:
        kept = _RESULTS.get((store.location, selection))
    return version, kept[1] if kept is not None and kept[0] == version else None


def keep(store: Store, selection: Hashable, version: Version, result: Any) -> None:
    """Remember a load's ``result`` for ``selection`` at ``version`` (the last few loads only)."""
    with _GUARD:
        _RESULTS[(store.location, selection)] = (version, result)
        _RESULTS.move_to_end((store.location, selection))
        while len(_RESULTS) > _MAX_RESULTS:
            _RESULTS.popitem(last=False)


def forget(store: Store | None = None) -> None:
    """Drop what is kept of ``store`` (of every store when None): the next load reads everything."""
    with _GUARD:
        if store is None:
            _SNAPSHOTS.clear()
            _RESULTS.clear()
        else:
            _SNAPSHOTS.pop(store.location, None)
            for key in [k for k in _RESULTS if k[0] == store.location]:
                del _RESULTS[key]
