"""Turn the loaders' long tables into the one wide polars frame a RunCollection queries.

Columns: ``run_id, run_name, experiment, experiment_id, status, start_time, end_time, artifact_uri``,
then ``params.*``, ``metrics.*`` and ``tags.*`` (each group sorted by key). Times are UTC datetimes.

Param typing: MLflow stores params as text. Each ``params.*`` column is typed as a whole when every
value in it is of one kind — all integers → ``Int64``, all numbers → ``Float64``, all ``True``/``False``
→ ``Boolean`` (``"None"`` counts as null there); otherwise the column stays ``String`` with MLflow's text
unchanged (lists and dicts stay JSON text). The untyped text is kept too, so that ``Run.params`` types
each value on its own with :func:`hydraflow.conventions.parse_param_value`.
"""

from __future__ import annotations

import polars as pl

from hydraflow.conventions import TAG_KEY_PREFIX
from hydraflow.core.loaders.tables import RUNS_SCHEMA, StoreTables

INFO_COLUMNS = list(RUNS_SCHEMA)
_NULL_WORDS = ["None", "null"]
_BOOL_WORDS = {"True": True, "true": True, "False": False, "false": False}


def _pivot(long: pl.DataFrame, prefix: str) -> pl.DataFrame:
    if long.height == 0:
        return pl.DataFrame(schema={"run_id": pl.String()})
    wide = long.pivot(on="key", index="run_id", values="value", aggregate_function=None)
    keys = sorted(c for c in wide.columns if c != "run_id")
    return wide.select("run_id", *[pl.col(k).alias(f"{prefix}{k}") for k in keys])


def type_param_column(column: pl.Series) -> pl.Series:
    """Type one column of param text as a whole (see module docstring); else return it unchanged."""
    if column.dtype != pl.String:
        return column
    values = column.set(column.is_in(_NULL_WORDS), None) if column.len() else column
    present = values.drop_nulls()
    if present.len() == 0:
        return column
    if present.is_in(list(_BOOL_WORDS)).all():
        return values.replace_strict(_BOOL_WORDS, return_dtype=pl.Boolean, default=None)
    if present.str.contains(r"^[+-]?\d+$").all():
        as_int = values.cast(pl.Int64, strict=False)
        if as_int.null_count() == values.null_count():
            return as_int
    as_float = values.cast(pl.Float64, strict=False)
    if as_float.null_count() == values.null_count():
        return as_float
    return column


def _original_keys(tags: pl.DataFrame) -> dict[str, str]:
    """``{sanitised: original}`` from the ``hydraflow.key.*`` tags the callback writes."""
    marks = tags.filter(pl.col("key").str.starts_with(TAG_KEY_PREFIX)).unique(["key", "value"])
    mapping: dict[str, str] = {}
    for key, value in marks.select("key", "value").iter_rows():
        mapping[key.removeprefix(TAG_KEY_PREFIX)] = value
    return mapping


def assemble(tables: StoreTables) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The typed wide frame and the raw-text params frame (``run_id`` + ``params.*``), same order."""
    runs = tables.runs.cast(RUNS_SCHEMA).with_columns(  # type: ignore[arg-type]
        pl.from_epoch(pl.col(c), time_unit="ms").dt.replace_time_zone("UTC").alias(c)
        for c in ("start_time", "end_time")
    )
    runs = runs.sort("start_time", "run_id", nulls_last=True).select(INFO_COLUMNS)
    originals = _original_keys(tables.tags)
    params = tables.params
    if originals:
        params = params.with_columns(pl.col("key").replace(originals))
    raw = runs.select("run_id").join(_pivot(params, "params."), on="run_id", how="left")
    typed_params = raw.with_columns(type_param_column(raw[c]) for c in raw.columns[1:])
    frame = (
        runs.join(typed_params, on="run_id", how="left", maintain_order="left")
        .join(_pivot(tables.metrics, "metrics."), on="run_id", how="left", maintain_order="left")
        .join(_pivot(tables.tags, "tags."), on="run_id", how="left", maintain_order="left")
    )
    return frame, raw
