"""Repeated loads of one sqlite store in a process (a notebook) pay for what changed only.

A :class:`Snapshot` per store file keeps the whole ``params``, ``tags`` and ``latest_metrics`` tables
as read last time, with the high-water marks of the tables MLflow only appends to. On the next load:

- the store file unchanged (:func:`store_version`: size, mtime and SQLite's change counter of the
  database, size and mtime of its ``-wal`` file) → the snapshot as is, and the very frame of the
  last load of the same selection (:func:`recall`; a RunCollection's frame is never changed in
  place);
- else, how each table is brought up to date, and why that is correct:

  - ``runs`` is re-read whole by the loader every time (it is small): names, status, end times,
    deletions (``lifecycle_stage``) and moves between experiments are always current. If a run
    of the snapshot is gone from the table (``mlflow gc`` deleted it for good, with its rows, whose
    rowids SQLite may then reuse), everything is read again: the runs up to the highest rowid seen
    are all there when as many remain and the one at that rowid is the same (a new run gets a
    rowid past the highest one there is);
  - ``params`` only ever gets rows (MLflow refuses to change a param): the rows past the highest
    rowid seen are appended;
  - ``latest_metrics`` is updated in place, but every metric MLflow logs also appends a row to
    ``metrics`` in the same transaction: the runs with new ``metrics`` rows get their
    ``latest_metrics`` rows read again;
  - both tables' row counts must then match the store's, else (rows deleted, or logged while we
    read) everything is read again;
  - ``tags`` are updated in place with no such trace (``set_tag``): they are read again whole
    (in two halves by rowid, one per thread), and compared with the snapshot's.

The runs whose params, metrics or tags rows changed are handed to the caller
(:class:`~hydraflow.core.loaders.tables.Changes`), which rebuilds the frame's rows of those runs
only (:mod:`hydraflow.core.refresh`).

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

from hydraflow.conventions import TAG_KEY_PREFIX
from hydraflow.core.loaders.tables import Changes
from hydraflow.core.store import Store

Reader = Callable[[str], pl.DataFrame]
T = TypeVar("T")
Version = tuple[int, ...]

QUERIES = {  # largest first: with fewer threads than queries, the work still balances
    "params": "SELECT run_uuid AS run_id, key, value FROM params",
    "tags": "SELECT run_uuid AS run_id, key, value FROM tags",
}
_TEXT: dict[str, pl.DataType] = {"run_id": pl.String(), "key": pl.String(), "value": pl.String()}
_TOPPED = ("params", "metrics", "tags", "runs")
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
    tops: dict[str, Any]  # the TOPS columns before the tables were read


_SNAPSHOTS: dict[str, Snapshot] = {}
_GUARD = threading.Lock()


def _like(frame: pl.DataFrame, model: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``model``'s column types (an empty SQL result comes back typed Int64)."""
    return frame.cast({c: model.schema[c] for c in frame.columns})


# The highest rowid of the tables (a b-tree's last entry: no scan), the number of runs and the id of
# the last one, as columns of a query the caller runs before reading the data (rows logged
# meanwhile are seen again, never missed)
TOPS = ", ".join(
    [f"(SELECT COALESCE(MAX(rowid), 0) FROM {t}) AS {t}_top" for t in _TOPPED]
    + [
        "(SELECT COUNT(*) FROM runs) AS runs_count",
        "(SELECT run_uuid FROM runs ORDER BY rowid DESC LIMIT 1) AS runs_last",
    ]
)


def _tops(row: dict[str, Any]) -> dict[str, Any]:
    """The :data:`TOPS` columns of a query's first row."""
    tops: dict[str, Any] = {t: int(row[f"{t}_top"]) for t in _TOPPED}
    return {**tops, "runs_count": int(row["runs_count"]), "runs_last": row["runs_last"]}


def _fresh(
    read: Reader,
    pool: Executor,
    metrics_query: str,
    version: Version,
    tops: dict[str, Any],
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


def _changed_tags(old: pl.DataFrame, new: pl.DataFrame) -> pl.Series:
    """The runs whose tag rows differ between two reads of the whole table (both in rowid order:
    when the old rows are the new ones' head, only the rows past it are new)."""
    if new.height >= old.height and new.head(old.height).equals(old):
        return new["run_id"].slice(old.height)
    gone = old.join(new, on=list(old.columns), how="anti", nulls_equal=True)
    added = new.join(old, on=list(old.columns), how="anti", nulls_equal=True)
    return pl.concat([gone["run_id"], added["run_id"]])


def _update(
    snap: Snapshot,
    read: Reader,
    pool: Executor,
    metrics_query: str,
    version: Version,
    tops: dict[str, Any],
) -> tuple[Snapshot, pl.Series] | None:
    """The snapshot brought up to date and the runs whose rows changed, or None when only a
    full read is safe."""
    touched = (
        f"SELECT DISTINCT run_uuid AS run_id FROM metrics "
        f"WHERE rowid > {snap.tops['metrics']} AND rowid <= {tops['metrics']}"
    )
    half, last = tops["tags"] // 2, snap.tops["runs"]
    futures = {  # the whole tags in two halves by rowid, one per thread
        "tags": pool.submit(read, f"{QUERIES['tags']} WHERE rowid <= {half}"),
        "tags_2": pool.submit(read, f"{QUERIES['tags']} WHERE rowid > {half}"),
        "runs": pool.submit(
            read,
            f"SELECT COUNT(*) AS kept, (SELECT run_uuid FROM runs WHERE rowid = {last}) AS last "
            f"FROM runs WHERE rowid <= {last}",
        ),
        "params": pool.submit(read, f"{QUERIES['params']} WHERE rowid > {snap.tops['params']}"),
        "touched": pool.submit(read, touched),
        "latest": pool.submit(read, f"{metrics_query} WHERE run_uuid IN ({touched})"),
        "counts": pool.submit(
            read,
            "SELECT (SELECT COUNT(*) FROM params) AS params, "
            "(SELECT COUNT(*) FROM latest_metrics) AS metrics",
        ),
    }
    got = {name: future.result() for name, future in futures.items()}
    runs = got["runs"].row(0, named=True)
    if runs["kept"] != snap.tops["runs_count"] or runs["last"] != snap.tops["runs_last"]:
        # a run of the snapshot deleted for good (mlflow gc), its rows with it: the rowids of
        # its rows may be reused. The runs up to the last one seen are all there when as many
        # remain and the last is the same (a new run gets a rowid past the highest one)
        return None
    new_params = _like(got["params"], snap.tables["params"])
    params = pl.concat([snap.tables["params"], new_params])
    metrics = snap.tables["metrics"]
    touched_runs = _like(got["touched"], metrics)
    if touched_runs.height:
        kept = metrics.join(touched_runs, on="run_id", how="anti")
        metrics = pl.concat([kept, _like(got["latest"], kept)])
    counts = got["counts"].row(0, named=True)
    if counts["params"] != params.height or counts["metrics"] != metrics.height:
        return None  # rows deleted, or logged while we read: read everything
    tags = pl.concat([got["tags"], got["tags_2"]]).cast(SCHEMAS["tags"])  # type: ignore[arg-type]
    changed = pl.concat(
        [new_params["run_id"], touched_runs["run_id"], _changed_tags(snap.tables["tags"], tags)]
    ).unique()
    tables = {"params": params, "tags": tags, "metrics": metrics}
    return Snapshot(version, tables, tops), changed


def whole_tables(
    store: Store,
    read: Reader,
    pool: Executor,
    metrics_query: str,
    first_row: dict[str, Any],
    then: Callable[[str, pl.DataFrame], T],
    since: Version | None = None,
) -> dict[str, T] | tuple[dict[str, pl.DataFrame], Changes]:
    """``then(name, table)`` of ``params``, ``tags`` and ``metrics`` (latest), each table whole as
    the store has it, read incrementally (see above); ``then`` runs in ``pool``, on a table read
    afresh in the thread that read it as soon as it arrives (the next step overlaps the other reads).

    ``read`` runs one query (any thread); ``metrics_query`` selects ``run_id, key, value`` of
    ``latest_metrics``; ``pool`` runs the reads concurrently; ``first_row`` is the first row of a
    query with the :data:`TOPS` columns, run before this call. ``since``: the version of the store
    the caller has a result of; when the snapshot kept is of that version and could be brought up
    to date, the whole tables (every run's rows) and what changed since (:class:`Changes`) are
    returned instead, and ``then`` never runs.
    """
    tops = _tops(first_row)
    version = store_version(store)  # before reading: a later write makes the next load look again
    with _GUARD:
        snap = _SNAPSHOTS.get(store.location)
    changed: pl.Series | None = None
    if snap is not None and snap.version == version:
        updated: Snapshot | None = snap
    else:
        step = _update(snap, read, pool, metrics_query, version, tops) if snap else None
        updated, changed = step if step is not None else (None, None)
    if updated is None:
        updated, results = _fresh(read, pool, metrics_query, version, tops, then)
    with _GUARD:
        _SNAPSHOTS[store.location] = updated
    if changed is None and updated is not snap:
        return results  # read afresh
    tags = updated.tables["tags"]
    # a NULL tag value makes a column no run has a value in: the caller's merge could not tell
    if snap and changed is not None and since == snap.version and not tags["value"].null_count():
        marks = tags.filter(pl.col("key").str.starts_with(TAG_KEY_PREFIX))
        return updated.tables, Changes(changed, marks)
    futures = {name: pool.submit(then, name, table) for name, table in updated.tables.items()}
    return {name: future.result() for name, future in futures.items()}


_RESULTS: OrderedDict[tuple[Hashable, ...], tuple[Version, Any]] = OrderedDict()
_MAX_RESULTS = 8


def recall(store: Store, selection: Hashable) -> tuple[Version, Version | None, Any]:
    """The store's version now, and the version and result :func:`keep` stored last for
    ``selection`` (``None, None`` when nothing was kept). Read the version before loading: a write
    during the load then shows as a newer version next time."""
    version = store_version(store)
    with _GUARD:
        kept = _RESULTS.get((store.location, selection))
    return (version, *kept) if kept is not None else (version, None, None)


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
