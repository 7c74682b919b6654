"""Read metric histories (every logged value, not only the latest) of many runs at once.

One read per kind of store, never one request per run:

- sqlite: one SQL query on ``metrics`` (its primary key starts with ``key``, so ``key IN (...)`` is an
  index range), narrowed to the runs in polars — or in SQL when they are a few;
- file store: each run's ``metrics/<key>`` file, parsed in one pass;
- tracking server: the server's bulk endpoint (``metrics/get-history-bulk``: up to 100 runs and
  25,000 values per request, the one MLflow's UI charts use), batches split in two whenever a reply
  comes back full, and the paged ``metrics/get-history`` for a single run with more values.

The result is one long frame: ``run_id, key, step, timestamp`` (UTC) ``, value`` (NaN kept).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

from hydraflow.core.store import Store

SCHEMA: dict[str, Any] = {
    "run_id": pl.String(),
    "key": pl.String(),
    "step": pl.Int64(),
    "timestamp": pl.Int64(),
    "value": pl.Float64(),
}
_FEW_RUNS = 500  # below this many runs, SQL narrows by run id; above, polars does
_BULK_RUNS = 100  # the server's limit of run ids per bulk request
_BULK_VALUES = 25_000  # ... and of values per reply (a full reply may have been cut)


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.cast(SCHEMA).with_columns(  # type: ignore[arg-type]
        pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC")
    )


def read_histories(store: Store, runs: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Every logged value of ``keys`` for ``runs`` (columns ``run_id``, ``experiment_id``).

    Rows come in no particular order; see the module docstring for the columns.
    """
    if runs.height == 0 or not keys:
        return _finish(pl.DataFrame(schema=SCHEMA))
    if store.kind == "sqlite":
        return _finish(_sqlite(store, runs["run_id"].to_list(), keys))
    if store.kind == "file":
        return _finish(_file_store(store, runs, keys))
    return _finish(_server(store, runs["run_id"].to_list(), keys))


def read_history(store: Store, run_id: str, experiment_id: str, key: str) -> pl.DataFrame:
    """``step``, ``timestamp``, ``value`` of one run's metric, by step."""
    runs = pl.DataFrame({"run_id": [run_id], "experiment_id": [experiment_id]})
    history = read_histories(store, runs, [key])
    return history.sort("step", "timestamp").select("step", "timestamp", "value")


# -- sqlite ----------------------------------------------------------------------------------------
def _sqlite(store: Store, run_ids: list[str], keys: Sequence[str]) -> pl.DataFrame:
    from hydraflow.core.loaders.sqlite import METRIC_VALUE, metric_value, read_sql, sql_text

    few = len(run_ids) <= _FEW_RUNS
    where = f"key IN ({','.join(sql_text(k) for k in keys)})"
    if few:
        where += f" AND run_uuid IN ({','.join(sql_text(r) for r in run_ids)})"
    frame = read_sql(
        store,
        f"SELECT run_uuid AS run_id, key, step, timestamp, {METRIC_VALUE} FROM metrics "
        f"WHERE {where}",
    ).with_columns(metric_value(pl.col("value")))
    if few:
        return frame
    wanted = pl.DataFrame({"run_id": run_ids}, schema={"run_id": pl.String()})
    return frame.with_columns(pl.col("run_id").cast(pl.String)).join(
        wanted, on="run_id", how="semi"
    )


# -- file store ------------------------------------------------------------------------------------
def _file_rows(store: Store, runs: pl.DataFrame, keys: Sequence[str]) -> Iterator[list[str]]:
    """For each run and key with a file: ``[run_id, key, ts, value, step, ts, value, step, ...]``."""
    for run_id, experiment_id in runs.select("run_id", "experiment_id").iter_rows():
        folder = store.path / str(experiment_id) / run_id / "metrics"
        for key in keys:
            try:
                fields = (folder / key).read_text().split()
            except OSError:
                continue
            if len(fields) % 3:  # a file of old two-field lines (no step): one line at a time
                fields = []
                for line in (folder / key).read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        fields += [parts[0], parts[1], parts[2] if len(parts) > 2 else "0"]
            yield [run_id, key, *fields]


def _file_store(store: Store, runs: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    ids: list[str] = []
    names: list[str] = []
    stamps: list[str] = []
    values: list[str] = []
    steps: list[str] = []
    for row in _file_rows(store, runs, keys):
        count = (len(row) - 2) // 3
        ids += [row[0]] * count
        names += [row[1]] * count
        stamps += row[2::3]
        values += row[3::3]
        steps += row[4::3]
    return pl.DataFrame(
        {"run_id": ids, "key": names, "step": steps, "timestamp": stamps, "value": values},
        schema=dict.fromkeys(SCHEMA, pl.String()),
    ).with_columns(
        pl.col("step", "timestamp").cast(pl.Int64),
        pl.col("value").str.to_lowercase().cast(pl.Float64),
    )


# -- tracking server -------------------------------------------------------------------------------
def _get(client: Any, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    from hydraflow.core.loaders.rest import request

    return request(client, "GET", path, params=params)


def _one_run(client: Any, run_id: str, key: str) -> list[dict[str, Any]]:
    """A run's whole history of ``key``, page by page (``metrics/get-history``)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params = [("run_id", run_id), ("metric_key", key), ("max_results", str(_BULK_VALUES))]
        if token:
            params.append(("page_token", token))
        data = _get(client, "/api/2.0/mlflow/metrics/get-history", params)
        found += [{**m, "run_id": run_id} for m in data.get("metrics", [])]
        token = data.get("next_page_token")
        if not token:
            return found


def _bulk(client: Any, run_ids: list[str], key: str) -> list[dict[str, Any]]:
    """``key``'s history for up to 100 runs in one request; a full reply is asked again in halves."""
    params = [("run_id", r) for r in run_ids]
    params += [("metric_key", key), ("max_results", str(_BULK_VALUES))]
    found: list[dict[str, Any]] = _get(
        client, "/ajax-api/2.0/mlflow/metrics/get-history-bulk", params
    ).get("metrics", [])
    if len(found) < _BULK_VALUES:
        return found
    if len(run_ids) == 1:
        return _one_run(client, run_ids[0], key)
    half = len(run_ids) // 2
    return _bulk(client, run_ids[:half], key) + _bulk(client, run_ids[half:], key)


def _server(store: Store, run_ids: list[str], keys: Sequence[str]) -> pl.DataFrame:
    import httpx

    from hydraflow.core._parallel import worker_count

    batches = [
        (run_ids[i : i + _BULK_RUNS], key)
        for key in keys
        for i in range(0, len(run_ids), _BULK_RUNS)
    ]
    with (
        httpx.Client(base_url=store.location, timeout=120.0) as client,
        ThreadPoolExecutor(max_workers=max(2, worker_count(len(batches)))) as pool,
    ):
        parts = list(pool.map(lambda batch: _bulk(client, *batch), batches))
    rows = [
        (m["run_id"], m["key"], int(m.get("step", 0)), int(m["timestamp"]), float(m["value"]))
        for part in parts
        for m in part
    ]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")
