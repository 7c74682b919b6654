"""Turn ``filter`` / ``exclude`` arguments into one polars boolean expression over the frame.

- ``{"model.type": "lstm"}`` or ``model__type="lstm"``: equality (``None`` matches missing values);
- a list or set: membership; a ``(lo, hi)`` tuple: inclusive range (``None`` leaves a side open);
- a callable as a value: a predicate on that value; a polars expression: used as is;
- a callable as a positional argument: a predicate on each :class:`Run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from hydraflow.conventions import parse_param_value
from hydraflow.core import keys

if TYPE_CHECKING:
    from hydraflow.core.collection import RunCollection


def _coerce(key: str, column: str, value: Any, dtype: pl.DataType) -> Any:
    """Match the user's value to the column's type (params may be typed or text).

    Raises:
        ValueError: A value that cannot be compared with the column (e.g. text for a number).
    """
    if dtype == pl.String and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    if dtype == pl.String:
        return value
    typed = parse_param_value(value) if isinstance(value, str) else value
    numeric = isinstance(typed, (int, float)) and not isinstance(typed, bool)
    fits = (
        (dtype.is_numeric() and numeric)
        or (dtype == pl.Boolean and isinstance(typed, bool))
        or (dtype.is_temporal() and not isinstance(typed, (str, bool)))
        or dtype == pl.Null
    )
    if not fits:
        raise ValueError(
            f"filter on {key!r}: {value!r} cannot be compared with {column!r}, which holds "
            f"{dtype} values."
        )
    return typed


def condition(frame: pl.DataFrame, key: str, value: Any) -> pl.Expr:
    """The expression for one ``key=value`` condition."""
    column = keys.resolve(keys.normalize(key), frame.columns)
    col, dtype = pl.col(column), frame.schema[column]
    if value is None:
        return col.is_null()
    if isinstance(value, (list, set, frozenset)):
        items = [v for v in value if v is not None]
        expr = col.is_in([_coerce(key, column, v, dtype) for v in items])
        return expr | col.is_null() if len(items) < len(value) else expr
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(
                f"filter on {key!r}: a tuple means a (low, high) range and needs 2 items, "
                f"got {value!r}. Use a list for membership."
            )
        low, high = value
        expr = pl.lit(True)
        if low is not None:
            expr = expr & (col >= _coerce(key, column, low, dtype))
        if high is not None:
            expr = expr & (col <= _coerce(key, column, high, dtype))
        return expr & col.is_not_null()
    if isinstance(value, pl.Expr):
        return col == value
    if callable(value):
        predicate = value
        return col.map_elements(lambda v: bool(predicate(v)), return_dtype=pl.Boolean)
    return col == _coerce(key, column, value, dtype)


def build(runs: RunCollection, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> pl.Series:
    """A boolean mask (nulls are ``False``) over ``runs`` for all conditions together (AND)."""
    frame = runs.to_frame()
    exprs: list[pl.Expr] = []
    masks: list[pl.Series] = []
    for arg in args:
        if isinstance(arg, Mapping):
            exprs.extend(condition(frame, str(k), v) for k, v in arg.items())
        elif isinstance(arg, pl.Expr):
            exprs.append(arg)
        elif callable(arg):
            check: Callable[[Any], Any] = arg
            masks.append(pl.Series([bool(check(run)) for run in runs], dtype=pl.Boolean))
        else:
            raise TypeError(
                f"filter conditions are dicts, polars expressions or callables on a Run; "
                f"got {type(arg).__name__} {arg!r}."
            )
    exprs.extend(condition(frame, k, v) for k, v in kwargs.items())
    mask = pl.repeat(True, frame.height, dtype=pl.Boolean, eager=True)
    if exprs:
        try:
            combined = frame.select(pl.all_horizontal(exprs).alias("mask")).to_series()
        except pl.exceptions.ColumnNotFoundError as exc:
            raise keys.missing_column(exc, frame.columns) from None
        mask = mask & combined.fill_null(False)
    for extra in masks:
        mask = mask & extra
    return mask
