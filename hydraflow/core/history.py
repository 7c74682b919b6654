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
        import adbc_driver_sqlite.dbapi as adbc

        with adbc.connect(store.readonly_uri) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT step, timestamp, CASE WHEN is_nan THEN NULL ELSE CAST(value AS REAL) END "
                "AS value, is_nan FROM metrics WHERE run_uuid = ? AND key = ?",
                (info.run_id, key),
            )
            frame = pl.from_arrow(cursor.fetch_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(
            pl.when(pl.col("is_nan").cast(pl.Boolean))
            .then(float("nan"))
            .otherwise(pl.col("value"))
            .alias("value")
        ).drop("is_nan")
        return _finish(frame)
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
