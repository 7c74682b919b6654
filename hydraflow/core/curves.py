"""Learning curves of a collection: metric histories as one long frame, and their per-group summary.

:func:`history_frame` backs ``RunCollection.metric_history`` and :func:`curve_summary` backs
``RunCollection.plot_history``; both check what they are asked and say what to do when it is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import polars as pl

from hydraflow.core import keys as keyspace
from hydraflow.core.errors import ColumnTypeError, RunSelectionError, UnknownKeyError, suggestion
from hydraflow.core.history import read_histories
from hydraflow.core.store import open_store

Band = Literal["std", "minmax", "none"]
BANDS: tuple[str, ...] = ("std", "minmax", "none")


def _as_list(value: str | Sequence[str] | None, what: str) -> list[str]:
    """``value`` as a list of keys (None: none).

    Raises:
        TypeError: Anything but a key or a list of keys.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise TypeError(f"{what} must be a key or a list of keys, e.g. 'loss', not {value!r}.")


def metric_names(frame: pl.DataFrame, asked: str | Sequence[str], call: str) -> list[str]:
    """The metric names (no prefix) of the keys asked for, each checked against the frame.

    Raises:
        RunSelectionError: The collection is empty.
        ColumnTypeError: A key is a param, tag or run attribute (only metrics have a history).
        UnknownKeyError: No run of the collection has that metric.
    """
    names = _as_list(asked, f"{call}: the metric")
    if not names:
        raise ValueError(f"{call} needs a metric key, e.g. {call}('loss').")
    if frame.height == 0:
        raise RunSelectionError(
            f"{call}({names[0]!r}) on an empty RunCollection: no run matched. Check the "
            "experiment name and filters (hydraflow runs EXPERIMENT lists what there is)."
        )
    metrics = [c.removeprefix("metrics.") for c in frame.columns if c.startswith("metrics.")]
    found = []
    for key in names:
        name = keyspace.normalize(key).removeprefix("metrics.")
        column = f"metrics.{name}"
        if column in frame.columns and frame[column].null_count() < frame.height:
            found.append(name)
            continue
        if column not in frame.columns and not key.startswith("metrics."):
            try:
                other = keyspace.resolve(keyspace.normalize(key), frame.columns)
            except UnknownKeyError:
                other = None
            if other is not None:
                raise ColumnTypeError(
                    f"{call}({key!r}): {other!r} is not a metric ({frame.schema[other]} values); "
                    "only metrics have a history." + suggestion(name, metrics, "metrics")
                )
        raise UnknownKeyError(
            f"{call}({key!r}): none of these {frame.height} runs logged a metric {name!r}."
            + suggestion(name, metrics, "metrics")
        )
    return list(dict.fromkeys(found))


def history_frame(
    frame: pl.DataFrame,
    uris: pl.Series,
    metrics: str | Sequence[str],
    params: str | Sequence[str] | None = None,
    call: str = "metric_history",
) -> pl.DataFrame:
    """``run_id, key, step, timestamp, value`` and the ``params`` asked for (named as asked), rows
    in the collection's run order, then by key, step and timestamp.

    ``uris`` is each row's tracking URI: runs of several stores are read store by store.
    """
    names = metric_names(frame, metrics, call)
    extra = {
        key: keyspace.resolve(keyspace.normalize(key), frame.columns)
        for key in _as_list(params, f"{call}: params")
    }
    runs = frame.select("run_id", "experiment_id", uris.alias("__uri")).with_row_index("__row")
    parts = [
        read_histories(open_store(str(uri)), group, names)
        for (uri,), group in runs.group_by("__uri", maintain_order=True)
    ]
    history = (
        pl.concat(parts)
        .join(runs.select("run_id", "__row"), on="run_id", how="inner")
        .sort("__row", "key", "step", "timestamp")
        .drop("__row")
    )
    if extra:
        chosen = frame.select("run_id", *[pl.col(c).alias(k) for k, c in extra.items()])
        history = history.join(chosen, on="run_id", how="left", maintain_order="left")
    return history


def curve_summary(history: pl.DataFrame, group: str | None, x: str = "step") -> pl.DataFrame:
    """Per key, group and ``x``: ``mean``, ``std``, ``min``, ``max`` and the number of runs ``n``.

    Values that are NaN or infinite are left out (a diverged run would hide every other curve).
    """
    label = pl.col(group).cast(pl.String) if group else pl.lit("all")
    finite = history.filter(pl.col("value").is_finite())
    return (
        finite.with_columns(label.alias("group"))
        .group_by("key", "group", x)
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std().alias("std"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
            pl.col("run_id").n_unique().alias("n"),
        )
        .sort("key", "group", x, nulls_last=True)
    )
