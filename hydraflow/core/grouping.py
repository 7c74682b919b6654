"""``runs.group_by(...)``: aggregate per group into a polars frame, one row per group, ordered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import polars as pl

from hydraflow.core import keys
from hydraflow.core.errors import ColumnTypeError

if TYPE_CHECKING:
    from hydraflow.core.collection import RunCollection


def numeric_column(frame: pl.DataFrame, key: str, operation: str, temporal: bool = False) -> str:
    """Resolve ``key`` and check the column can be aggregated by ``operation``.

    Raises:
        UnknownKeyError: No run has the key.
        ColumnTypeError: The column holds text (or another non-numeric type).
    """
    column = keys.resolve(key, frame.columns)
    dtype = frame.schema[column]
    if dtype.is_numeric() or (temporal and dtype.is_temporal()) or dtype == pl.Null:
        return column
    raise ColumnTypeError(
        f"{operation}({key!r}) needs a numeric column, but {column!r} holds {dtype} values. "
        "Aggregate a metric or a numeric param, or use count()."
    )


class GroupBy:
    """Runs grouped by one or more keys. Aggregations return one row per group, sorted by group."""

    def __init__(self, runs: RunCollection, group_keys: tuple[str, ...]) -> None:
        if not group_keys:
            raise ValueError("group_by needs at least one key, e.g. group_by('model.type').")
        self._runs = runs
        frame = runs.to_frame()
        self._keys = [keys.normalize(k) for k in group_keys]
        self._columns = [keys.resolve(k, frame.columns) for k in self._keys]
        self._frame = frame.with_columns(
            pl.col(c).alias(k) for c, k in zip(self._columns, self._keys, strict=True)
        )

    def agg(self, *exprs: pl.Expr | str, **named: pl.Expr) -> pl.DataFrame:
        """Any polars aggregation, e.g. ``agg(pl.col("metrics.loss").min())``."""
        grouped = self._frame.group_by(self._keys, maintain_order=False)
        try:
            return grouped.agg(*exprs, **named).sort(self._keys, nulls_last=True)
        except pl.exceptions.ColumnNotFoundError as exc:
            raise keys.missing_column(exc, self._frame.columns) from None

    def _numeric(self, operation: str, metric_keys: tuple[str, ...]) -> pl.DataFrame:
        if not metric_keys:
            raise ValueError(f"{operation}() needs at least one key, e.g. 'metrics.loss'.")
        temporal = operation in ("min", "max")
        exprs = []
        for key in metric_keys:
            column = numeric_column(self._frame, key, operation, temporal)
            exprs.append(getattr(pl.col(column), operation)().alias(key))
        return self.agg(*exprs)

    def mean(self, *metric_keys: str) -> pl.DataFrame:
        """Mean of each key per group."""
        return self._numeric("mean", metric_keys)

    def min(self, *metric_keys: str) -> pl.DataFrame:
        """Minimum of each key per group."""
        return self._numeric("min", metric_keys)

    def max(self, *metric_keys: str) -> pl.DataFrame:
        """Maximum of each key per group."""
        return self._numeric("max", metric_keys)

    def std(self, *metric_keys: str) -> pl.DataFrame:
        """Sample standard deviation of each key per group."""
        return self._numeric("std", metric_keys)

    def count(self) -> pl.DataFrame:
        """Number of runs per group (column ``count``)."""
        return self.agg(pl.len().alias("count"))

    def __len__(self) -> int:
        return self._frame.select(self._keys).unique().height

    def __repr__(self) -> str:
        return f"GroupBy(keys={self._keys}, {len(self)} groups of {len(self._runs)} runs)"

    def __iter__(self) -> Iterator[tuple[tuple[Any, ...], RunCollection]]:
        """``(group values, runs of the group)`` pairs in group order."""
        groups = self._frame.select(self._keys).unique().sort(self._keys, nulls_last=True)
        for values in groups.iter_rows():
            mask = pl.all_horizontal(
                pl.col(k).is_null() if v is None else pl.col(k) == v
                for k, v in zip(self._keys, values, strict=True)
            )
            yield values, self._runs._subset(self._frame.select(mask).to_series())
