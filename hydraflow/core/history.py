"""Read a metric's full history from whichever store holds the run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from hydraflow.core.store import Store

if TYPE_CHECKING:
    from hydraflow.core.run import RunInfo

_SCHEMA: dict[str, Any] = {
    "step": pl.Int64(),
    "timestamp": pl.Int64(),
    "value": pl.Float64(),
}


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.cast(_SCHEMA)  # type: ignore[arg-type]
        .sort("step", "timestamp")
        .with_columns(pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC"))
    )


def read_history(store: Store, info: RunInfo, key: str) -> pl.DataFrame:
    """``step``, ``timestamp``, ``value`` of every logged value of ``key``, by step."""
    if store.kind == "sqlite":
        from hydraflow.core.loaders.sqlite import METRIC_VALUE, metric_value, read_sql, sql_text

        frame = read_sql(
            store,
            f"SELECT step, timestamp, {METRIC_VALUE} FROM metrics "
            f"WHERE run_uuid = {sql_text(info.run_id)} AND key = {sql_text(key)}",
        )
        return _finish(frame.with_columns(metric_value(pl.col("value"))))
    if store.kind == "file":
        file = store.path / info.experiment_id / info.run_id / "metrics" / key
        rows = []
        for line in file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                rows.append(
                    (int(parts[2]) if len(parts) > 2 else 0, int(parts[0]), float(parts[1]))
                )
        return _finish(pl.DataFrame(rows, schema=_SCHEMA, orient="row"))
    from mlflow import MlflowClient

    history = MlflowClient(store.uri).get_metric_history(info.run_id, key)
    rows = [(m.step, m.timestamp, m.value) for m in history]
    return _finish(pl.DataFrame(rows, schema=_SCHEMA, orient="row"))
