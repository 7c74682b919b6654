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


def _nulled(column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_in(_NULL_WORDS)).then(None).otherwise(pl.col(column))


def _kind_probes(column: str) -> list[pl.Expr]:
    """One-row statistics telling which type fits every value of a text column."""
    value = _nulled(column)
    present = value.is_not_null()
    return [
        (present & ~value.is_in(list(_BOOL_WORDS))).sum().alias(f"{column}\0bool"),
        (
            present
            & (~value.str.contains(r"^[+-]?\d+$") | value.cast(pl.Int64, strict=False).is_null())
        )
        .sum()
        .alias(f"{column}\0int"),
        (present & value.cast(pl.Float64, strict=False).is_null()).sum().alias(f"{column}\0float"),
        (present & ~value.str.contains(r"^[+-]?\d+$")).sum().alias(f"{column}\0digits"),
        present.sum().alias(f"{column}\0present"),
    ]


def _typed(column: str, misfits: dict[str, int]) -> pl.Expr | None:
    """The cast for a column whose values all fit one type, else ``None`` (stays text)."""
    if misfits["present"] == 0:
        return None
    if misfits["bool"] == 0:
        return _nulled(column).replace_strict(_BOOL_WORDS, return_dtype=pl.Boolean, default=None)
    if misfits["int"] == 0:
        return _nulled(column).cast(pl.Int64, strict=False)
    if misfits["digits"] == 0:  # integers beyond Int64: keep the exact text
        return None
    if misfits["float"] == 0:
        return _nulled(column).cast(pl.Float64, strict=False)
    return None


def type_params(raw: pl.DataFrame) -> pl.DataFrame:
    """Type each ``params.*`` text column as a whole (see module docstring), in two passes."""
    columns = [c for c in raw.columns if c.startswith("params.") and raw.schema[c] == pl.String]
    if not columns or raw.height == 0:
        return raw
    stats = raw.select(probe for c in columns for probe in _kind_probes(c)).row(0, named=True)
    casts = []
    for column in columns:
        misfits = {
            kind: stats[f"{column}\0{kind}"]
            for kind in ("bool", "int", "digits", "float", "present")
        }
        cast = _typed(column, misfits)
        if cast is not None:
            casts.append(cast.alias(column))
    return raw.with_columns(casts) if casts else raw


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
    typed_params = type_params(raw)
    frame = (
        runs.join(typed_params, on="run_id", how="left", maintain_order="left")
        .join(_pivot(tables.metrics, "metrics."), on="run_id", how="left", maintain_order="left")
        .join(_pivot(tables.tags, "tags."), on="run_id", how="left", maintain_order="left")
    )
    return frame, raw
