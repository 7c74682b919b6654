"""RunCollection: many runs in one polars frame — filter, sort, aggregate, group and plot them."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import polars as pl

from hydraflow.conventions import TAG_ROLE, TAG_SWEEP_ID
from hydraflow.core import filters, keys
from hydraflow.core.errors import RunNotFoundError, RunSelectionError, UnknownKeyError, suggestion
from hydraflow.core.grouping import GroupBy, numeric_column
from hydraflow.core.hydra_dirs import folder_run_ids, hydra_folder
from hydraflow.core.loaders import StoreTables, load_tables
from hydraflow.core.refresh import URI_COLUMN as _URI
from hydraflow.core.refresh import store_frames
from hydraflow.core.run import Run, locate, run_from_row
from hydraflow.core.store import Store, open_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _is_hydra_folder(name: str) -> bool:
    """Whether an ``experiment`` argument is in fact a Hydra job or sweep folder on disk."""
    path = Path(name).expanduser()
    return path.is_dir() and hydra_folder(path.absolute()) is not None


class RunCollection:
    """An ordered set of runs backed by one polars frame (see :meth:`to_frame` for its columns)."""

    def __init__(self, frame: pl.DataFrame, raw_params: pl.DataFrame) -> None:
        self._frame = frame
        self._raw = raw_params  # run_id, __tracking_uri, params.* as MLflow's text; same rows
        self._runs: dict[int, Run] = {}

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        experiment: str | Sequence[str] | None = None,
        *,
        tracking_uri: str | os.PathLike[str] | None = None,
        sweep_id: str | None = None,
        include_sweep_runs: bool = False,
    ) -> RunCollection:
        """The active runs of one or more experiments (all experiments when ``None``), or of Hydra
        sweep / job output folders.

        Args:
            experiment: Experiment name(s), or Hydra output folder(s) (``multirun/<date>/<time>``:
                the runs the MLflow callback recorded for it, see :mod:`hydraflow.core.hydra_dirs`).
            tracking_uri: The store (default: ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``).
            sweep_id: Keep only the runs of this sweep (tag ``hydraflow.sweep_id``).
            include_sweep_runs: Keep the sweep's parent run (tag ``hydraflow.role=sweep``) too.

        Raises:
            StoreNotFoundError, ExperimentNotFoundError: The store or an experiment does not exist.
            RunSelectionError: ``sweep_id`` matches no run.
        """
        names = [experiment] if isinstance(experiment, str) else experiment
        if names is not None and (
            not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names)
        ):
            raise TypeError(
                f"experiment must be a name or a list of names, not {experiment!r}; "
                "e.g. RunCollection.load('train')."
            )
        if names and all(_is_hydra_folder(name) for name in names):
            runs = cls.from_sources(
                list(names), os.fspath(tracking_uri) if tracking_uri is not None else None
            )
            return runs if sweep_id is None else runs._of_sweep(sweep_id, "these folders")
        store = open_store(tracking_uri)
        runs = cls._from_store(store, list(names) if names is not None else None, None)
        role = f"tags.{TAG_ROLE}"
        if not include_sweep_runs and role in runs._frame.columns:
            parents = runs._frame[role] == "sweep"
            if parents.any():
                runs = runs._subset(~parents.fill_null(False))._without_empty_columns()
        return runs if sweep_id is None else runs._of_sweep(sweep_id, store.uri)

    def _of_sweep(self, sweep_id: str, where: str) -> RunCollection:
        column = f"tags.{TAG_SWEEP_ID}"
        known = self._frame[column].drop_nulls().unique().to_list() if column in self else []
        if sweep_id not in known:
            raise RunSelectionError(
                f"no run of sweep {sweep_id!r} in {where}."
                + suggestion(sweep_id, known, "sweep ids")
            )
        return self.filter(pl.col(column) == sweep_id)

    @classmethod
    def _from_store(
        cls, store: Store, experiments: list[str] | None, run_ids: list[str] | None
    ) -> RunCollection:
        return cls(*store_frames(store, experiments, run_ids))

    @classmethod
    def from_sources(
        cls, sources: Sequence[str | os.PathLike[str]], tracking_uri: str | None = None
    ) -> RunCollection:
        """Runs from run directories and run ids, in the order given (see :meth:`Run.load`)."""
        if not sources:
            raise RunNotFoundError("Run.load([]) got no run: pass run ids or run directories.")
        located = [locate(source, tracking_uri) for source in sources]
        folder_tags: dict[Store, StoreTables] = {}
        ordered: list[tuple[Store, str]] = []
        for store, found in located:
            if isinstance(found, str):
                ordered.append((store, found))
                continue
            if store not in folder_tags:
                folder_tags[store] = load_tables(store)
            tables = folder_tags[store]
            starts = tables.runs.select("run_id", "start_time")
            ordered.extend(
                (store, run_id) for run_id in folder_run_ids(found, tables.tags, starts, store.uri)
            )
        by_store: dict[Store, list[str]] = {}
        for store, run_id in ordered:
            by_store.setdefault(store, []).append(run_id)
        parts = [cls._from_store(store, None, ids) for store, ids in by_store.items()]
        frame = pl.concat([p._frame for p in parts], how="diagonal_relaxed")
        raw = pl.concat([p._raw for p in parts], how="diagonal_relaxed")
        order = {run_id: i for i, (_, run_id) in enumerate(ordered)}
        index = frame.select(
            pl.col("run_id").replace_strict(order, return_dtype=pl.Int64)
        ).to_series()
        return cls(frame, raw)._take(index.arg_sort())

    # -- the frame --------------------------------------------------------------------------
    def to_frame(self) -> pl.DataFrame:
        """``run_id, run_name, experiment_id, experiment, status, start_time, end_time,
        artifact_uri``, then ``params.*`` (typed per column, see :mod:`hydraflow.core.frame`),
        ``metrics.*`` (latest values) and ``tags.*``. A copy (cheap: the columns are shared), so
        that changing it in place never changes the collection or a later load's result."""
        return self._frame.clone()

    def keys(self) -> list[str]:
        """Every key a filter or aggregation accepts (params bare, the rest prefixed)."""
        return keys.display_keys(self._frame.columns)

    def __contains__(self, key: object) -> bool:
        """Whether some run has ``key`` (same spelling as filters: ``"lr"``, ``"metrics.loss"``)."""
        if not isinstance(key, str):
            return False
        try:
            keys.resolve(keys.normalize(key), self._frame.columns)
        except UnknownKeyError:
            return False
        return True

    def _take(self, indices: pl.Series | Sequence[int]) -> RunCollection:
        idx = pl.Series(indices, dtype=pl.Int64) if not isinstance(indices, pl.Series) else indices
        return RunCollection(self._frame[idx], self._raw[idx])

    def _subset(self, mask: pl.Series) -> RunCollection:
        return RunCollection(self._frame.filter(mask), self._raw.filter(mask))

    def _without_empty_columns(self) -> RunCollection:
        """Drop params/metrics/tags columns no run has (as ``mlflow.search_runs`` would not show)."""
        keyed = ("params.", "metrics.", "tags.")
        empty = [
            c
            for c in self._frame.columns
            if c.startswith(keyed) and self._frame[c].null_count() == self._frame.height
        ]
        if not empty:
            return self
        raw = [c for c in empty if c in self._raw.columns]
        return RunCollection(self._frame.drop(empty), self._raw.drop(raw))

    # -- sequence protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return self._frame.height

    def __iter__(self) -> Iterator[Run]:
        return (self._run(i) for i in range(len(self)))

    @overload
    def __getitem__(self, item: int) -> Run: ...
    @overload
    def __getitem__(self, item: slice) -> RunCollection: ...
    @overload
    def __getitem__(self, item: str) -> pl.Series: ...
    def __getitem__(self, item: int | slice | str) -> Run | RunCollection | pl.Series:
        """``runs[0]`` a Run, ``runs[1:3]`` a RunCollection, ``runs["metrics.loss"]`` a Series."""
        if isinstance(item, str):
            column = keys.resolve(keys.normalize(item), self._frame.columns)
            return self._frame[column].alias(item)
        if isinstance(item, slice):
            return self._take(list(range(len(self)))[item])
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"index runs with an int, a slice or a key, not {item!r}.")
        if not -len(self) <= item < len(self):
            raise IndexError(f"run index {item} out of range for {len(self)} runs.")
        return self._run(item % len(self))

    def _run(self, index: int) -> Run:
        if index not in self._runs:
            raw = self._raw.row(index, named=True)
            self._runs[index] = run_from_row(self._frame.row(index, named=True), raw, raw[_URI])
        return self._runs[index]

    def __repr__(self) -> str:
        experiments = self._frame["experiment"].unique().sort().to_list() if len(self) else []
        return f"RunCollection({len(self)} runs, experiments={experiments})"

    # -- selecting --------------------------------------------------------------------------
    def filter(self, *conditions: Any, **by_key: Any) -> RunCollection:
        """Runs matching all conditions (see :mod:`hydraflow.core.filters`)."""
        return self._subset(filters.build(self, conditions, by_key))

    def exclude(self, *conditions: Any, **by_key: Any) -> RunCollection:
        """Runs not matching all conditions together (the complement of :meth:`filter`)."""
        return self._subset(~filters.build(self, conditions, by_key))

    def sort(self, *sort_keys: str, descending: bool = False) -> RunCollection:
        """Runs ordered by keys (missing values last)."""
        columns = [keys.resolve(keys.normalize(k), self._frame.columns) for k in sort_keys]
        order = (
            self._frame.with_row_index("__row")
            .sort(columns, descending=descending, nulls_last=True)["__row"]
            .cast(pl.Int64)
        )
        return self._take(order)

    def first(self) -> Run:
        """The first run. Raises RunSelectionError when there is none."""
        if not len(self):
            raise RunSelectionError("first() on an empty RunCollection: no run matched.")
        return self[0]

    def last(self) -> Run:
        """The last run. Raises RunSelectionError when there is none."""
        if not len(self):
            raise RunSelectionError("last() on an empty RunCollection: no run matched.")
        return self[-1]

    def one(self) -> Run:
        """The only run. Raises RunSelectionError on zero or several runs."""
        if len(self) != 1:
            ids = ", ".join(self._frame["run_id"].head(5).to_list())
            raise RunSelectionError(
                f"one() expects exactly 1 run, found {len(self)}"
                + (f" ({ids}{', ...' if len(self) > 5 else ''})" if ids else "")
                + ". Filter further (e.g. runs.filter(lr=0.01)) or use first()."
            )
        return self[0]

    def best(self, key: str, mode: Literal["min", "max"] = "min") -> Run:
        """The run with the lowest (``min``) or highest (``max``) value of ``key``."""
        if mode not in ("min", "max"):
            raise ValueError(f"best(mode={mode!r}): mode is 'min' or 'max'.")
        column = numeric_column(self._frame, keys.normalize(key), "best")
        values = self._frame[column].cast(pl.Float64)
        valid = values.is_not_null() & ~values.is_nan()
        if not valid.any():
            raise RunSelectionError(f"best({key!r}): no run has a value for {column!r}.")
        candidates = values.set(~valid, float("inf") if mode == "min" else float("-inf"))
        index = candidates.arg_min() if mode == "min" else candidates.arg_max()
        assert index is not None
        return self[index]

    # -- aggregating ------------------------------------------------------------------------
    def _aggregate(self, operation: str, key: str) -> Any:
        column = numeric_column(
            self._frame, keys.normalize(key), operation, operation in ("min", "max")
        )
        return getattr(self._frame[column], operation)()

    def mean(self, key: str) -> float | None:
        """Mean of a numeric key over the runs."""
        return self._aggregate("mean", key)

    def min(self, key: str) -> Any:
        """Minimum of a numeric key."""
        return self._aggregate("min", key)

    def max(self, key: str) -> Any:
        """Maximum of a numeric key."""
        return self._aggregate("max", key)

    def std(self, key: str) -> float | None:
        """Sample standard deviation of a numeric key."""
        return self._aggregate("std", key)

    def count(self, key: str | None = None) -> int:
        """Number of runs, or of runs that have a value for ``key``."""
        if key is None:
            return len(self)
        column = keys.resolve(keys.normalize(key), self._frame.columns)
        return self._frame.height - self._frame[column].null_count()

    def group_by(self, *group_keys: str) -> GroupBy:
        """Group runs by keys; aggregate with ``mean``/``min``/``max``/``std``/``count``/``agg``."""
        return GroupBy(self, group_keys)

    # -- learning curves --------------------------------------------------------------------
    def metric_history(
        self, keys: str | Sequence[str], params: str | Sequence[str] | None = None
    ) -> pl.DataFrame:
        """Every logged value of one or more metrics for all runs, as one long frame.

        Columns ``run_id, key, step, timestamp`` (UTC) ``, value`` and the ``params`` asked for
        (named as asked, e.g. ``"model.type"``); rows in run order, then key, step, timestamp.
        One read per store (see :mod:`hydraflow.core.history`), not one request per run.

        Raises:
            RunSelectionError: The collection is empty.
            UnknownKeyError: No run has that metric, or a param asked for.
            ColumnTypeError: The key is a param or tag, not a metric.
        """
        from hydraflow.core.curves import history_frame

        return history_frame(self._frame, self._raw[_URI], keys, params)

    def plot_history(
        self,
        keys: str | Sequence[str],
        color: str | None = None,
        *,
        band: Literal["std", "minmax", "none"] = "std",
        logx: bool = False,
        logy: bool = False,
        path: str | os.PathLike[str] | None = None,
        title: str | None = None,
    ) -> Path | Figure:
        """Learning curves: a panel per metric, a line per value of ``color`` (a param) — the
        mean over its runs at each step — with a band (``std``: ± one standard deviation,
        ``minmax``: the range, ``none``); log axes with ``logx`` / ``logy``.

        Returns the PNG path when ``path`` is given, else the matplotlib Figure.
        """
        from hydraflow.core.curves import BANDS, history_frame, metric_names
        from hydraflow.plot import plot_history

        if band not in BANDS:
            raise ValueError(f"plot_history(band={band!r}): band is one of {', '.join(BANDS)}.")
        names = metric_names(self._frame, keys, "plot_history")
        history = history_frame(
            self._frame, self._raw[_URI], names, [color] if color else None, "plot_history"
        )
        return plot_history(history, names, color, band, logx, logy, path, title)

    @overload
    def plot(
        self, x: str, y: str, color: str | None = None, path: None = None, title: str | None = None
    ) -> Figure: ...
    @overload
    def plot(
        self,
        x: str,
        y: str,
        color: str | None = None,
        *,
        path: str | os.PathLike[str],
        title: str | None = None,
    ) -> Path: ...
    def plot(
        self,
        x: str,
        y: str,
        color: str | None = None,
        path: str | os.PathLike[str] | None = None,
        title: str | None = None,
    ) -> Path | Figure:
        """A scatter/line plot of ``y`` against ``x``, one series per ``color`` value.

        Returns the PNG path when ``path`` is given, else the matplotlib Figure.
        """
        from hydraflow.plot import plot_frame

        columns = self._frame.columns
        resolved = {
            name: keys.resolve(keys.normalize(key), columns)
            for name, key in (("x", x), ("y", y), ("color", color))
            if key is not None
        }
        return plot_frame(
            self._frame,
            x=(resolved["x"], x),
            y=(resolved["y"], y),
            color=(resolved["color"], color) if color is not None else None,
            path=path,
            title=title,
        )
