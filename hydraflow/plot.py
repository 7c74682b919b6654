"""Plots of a run frame: one clean, labelled PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from hydraflow.core.errors import ColumnTypeError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _label(key: str) -> str:
    return key.removeprefix("metrics.").removeprefix("params.").removeprefix("info.")


def _log_scale(values: pl.Series) -> bool:
    """Use a log axis for positive values spanning more than two decades (learning rates)."""
    if not values.dtype.is_numeric():
        return False
    present = values.drop_nulls().cast(pl.Float64)
    present = present.filter(~present.is_nan())
    if present.len() < 2 or (present <= 0).any():
        return False
    low, high = present.min(), present.max()
    return bool(isinstance(low, float) and isinstance(high, float) and high / low >= 100)


def plot_frame(
    frame: pl.DataFrame,
    x: tuple[str, str],
    y: tuple[str, str],
    color: tuple[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Path | Figure:
    """Plot column ``y`` against ``x`` (each given as (column, user key)), one series per color.

    Numeric x: points, and a line through each series' mean per x (log axis when x spans two
    decades). Text x: one slot per category and color, points spread a little, the mean as a bar. Returns ``path`` after writing a PNG, or the Figure when ``path`` is None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x_col, x_key), (y_col, y_key) = x, y
    if not (frame[y_col].dtype.is_numeric()):
        raise ColumnTypeError(
            f"plot: y={y_key!r} must be numeric; {y_col!r} holds {frame[y_col].dtype}."
        )
    data = frame.select(
        pl.col(x_col).alias("x"),
        pl.col(y_col).cast(pl.Float64).alias("y"),
        (pl.col(color[0]).cast(pl.String) if color else pl.lit("all")).alias("group"),
    ).filter(pl.col("x").is_not_null() & pl.col("y").is_not_null() & ~pl.col("y").is_nan())
    numeric_x = data["x"].dtype.is_numeric()
    if not numeric_x:
        data = data.with_columns(pl.col("x").cast(pl.String))
    categories = sorted(data["x"].unique().to_list()) if not numeric_x else []

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130, layout="constrained")
    cmap = plt.get_cmap("tab10")
    groups = sorted(data["group"].unique().to_list(), key=lambda g: (g is None, str(g)))
    width = 0.7 / max(len(groups), 1)  # categorical x: each color gets its own slot
    for number, group in enumerate(groups):
        part = data.filter(pl.col("group").eq_missing(group))
        tone = cmap(number % 10)
        label = str(group) if color else "_nolegend_"
        if numeric_x:
            xs = part["x"].cast(pl.Float64).to_list()
            ax.scatter(xs, part["y"].to_list(), color=tone, alpha=0.55, s=28, edgecolors="none")
            line = pl.DataFrame({"x": xs, "y": part["y"]}).group_by("x").agg(pl.col("y").mean())
            line = line.sort("x")
            ax.plot(line["x"], line["y"], color=tone, lw=1.8, marker="o", ms=4, label=label)
            continue
        offset = (number - (len(groups) - 1) / 2) * width
        slots = [categories.index(v) + offset for v in part["x"]]
        spread = [((i * 7919) % 11 - 5) / 5 * width * 0.25 for i in range(len(slots))]
        ax.scatter(
            [x + d for x, d in zip(slots, spread, strict=True)],
            part["y"].to_list(),
            color=tone,
            alpha=0.55,
            s=28,
            edgecolors="none",
        )
        means = part.group_by("x").agg(pl.col("y").mean())
        centers = [categories.index(v) + offset for v in means["x"]]
        ax.hlines(
            means["y"],
            [c - width * 0.4 for c in centers],
            [c + width * 0.4 for c in centers],
            color=tone,
            lw=2.4,
            label=label,
        )
    if numeric_x and _log_scale(data["x"]):
        ax.set_xscale("log")
    if not numeric_x:
        ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.set_xlabel(_label(x_key))
    ax.set_ylabel(_label(y_key))
    ax.set_title(title or f"{_label(y_key)} vs {_label(x_key)}  ({data.height} runs)")
    ax.grid(True, which="major", axis="both" if numeric_x else "y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if color:
        ax.legend(title=_label(color[1]), frameon=False, loc="best")
    if data.height == 0:
        ax.text(
            0.5, 0.5, "no run has both values", ha="center", va="center", transform=ax.transAxes
        )
    if path is None:
        return fig
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target
