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


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> Path | Figure:
    """Write ``fig`` to the PNG ``path`` and close it (then return the path), or return it."""
    if path is None:
        return fig
    import matplotlib.pyplot as plt

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


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
    return _save(fig, path)


def plot_history(
    history: pl.DataFrame,
    keys: list[str] | None = None,
    color: str | None = None,
    band: str = "std",
    logx: bool = False,
    logy: bool = False,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Path | Figure:
    """Learning curves: one panel per metric, one line per ``color`` group (the mean over its runs
    at each step) with a shaded band (``std``: mean ± one standard deviation, ``minmax``: the
    range, ``none``). ``history`` is :func:`hydraflow.core.curves.history_frame`'s frame; ``keys``
    orders the panels (default: as in ``history``).

    Raises:
        ColumnTypeError: ``logy`` with values at or below zero.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hydraflow.core.curves import curve_summary

    if logy:
        low = history.filter(pl.col("value").is_finite())["value"].min()
        if isinstance(low, float) and low <= 0:
            raise ColumnTypeError(
                f"plot_history(logy=True): the values go down to {low:g}; a log axis shows only "
                "values above 0. Plot without logy, or a metric that stays positive."
            )
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    summary = curve_summary(history, color)
    names = keys or list(dict.fromkeys(history["key"].to_list()))
    order = (
        [str(v) for v in history[color].unique().sort(nulls_last=True).to_list()]
        if color
        else ["all"]
    )
    runs_per_group = (
        history.with_columns(
            (pl.col(color).cast(pl.String) if color else pl.lit("all")).alias("group")
        )
        .group_by("group")
        .agg(pl.col("run_id").n_unique().alias("runs"))
    )
    counts = dict(runs_per_group.iter_rows())
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(6.4 * len(names) if len(names) > 1 else 7.5, 4.6),
        dpi=130,
        layout="constrained",
        squeeze=False,
    )
    for ax, name in zip(axes[0], names, strict=True):
        for number, group in enumerate(order):
            part = summary.filter((pl.col("key") == name) & (pl.col("group").eq_missing(group)))
            if part.height == 0:
                continue
            tone = cmap(number % 10)
            steps, mean = part["step"].to_list(), part["mean"].to_list()
            label = f"{group}  ({counts.get(group, 0)} runs)" if color else "_nolegend_"
            ax.plot(steps, mean, color=tone, lw=2.2, label=label)
            if band == "std":
                spread = part["std"].fill_null(0.0)
                lower, upper = part["mean"] - spread, part["mean"] + spread
                if logy:  # a band below zero cannot be drawn: never below the lowest value
                    lower = pl.DataFrame(
                        [lower.alias("a"), part["min"].alias("b")]
                    ).max_horizontal()
            elif band == "minmax":
                lower, upper = part["min"], part["max"]
            else:
                continue
            ax.fill_between(steps, lower.to_list(), upper.to_list(), color=tone, alpha=0.18, lw=0)
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.3, not 3×10⁻¹
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(plain)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if logy:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_title(name if len(names) > 1 else "", fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    runs = history["run_id"].n_unique()
    spread_text = {"std": "mean ± 1 std", "minmax": "mean, min–max", "none": "mean"}[band]
    by = f" by {_label(color)}" if color else ""
    fig.suptitle(
        title or f"{', '.join(names)}{by}  ({runs} runs; {spread_text})",
        fontsize=12.5,
    )
    if color:
        handles, labels = axes[0][0].get_legend_handles_labels()
        axes[0][-1].legend(handles, labels, title=_label(color), frameon=False, loc="best")
    return _save(fig, path)
