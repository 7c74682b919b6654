"""A selection's frame from a store: the very frame of the last load when the store is unchanged,
the last frame brought up to date when the loader can tell which runs changed, else built anew.

Bringing a frame up to date (:func:`_patch`) rebuilds the rows of the runs that changed only: the
runs whose params, latest metrics or tags rows changed (the loader's :class:`~.loaders.Changes`),
whose ``runs`` row changed (status, end time, name, experiment: the runs table is read whole each
time), and the runs that joined the selection (new, restored, moved); the runs that left it are
dropped. Each params column is typed again over all runs' text (a new value may change its type);
columns no run has any more are dropped. The result equals a load from scratch; where that cannot
be told cheaply (the ``hydraflow.key.*`` tags that rename params changed, or are ambiguous), the
frame is built anew.
"""

from __future__ import annotations

import polars as pl

from hydraflow.conventions import TAG_KEY_PREFIX
from hydraflow.core.frame import INFO_COLUMNS, assemble, ordered_runs, type_params, widen
from hydraflow.core.loaders import StoreTables, load_tables
from hydraflow.core.loaders.sqlite_cache import keep, recall
from hydraflow.core.store import Store

URI_COLUMN = "__tracking_uri"
_GROUPS = ("params.", "metrics.", "tags.")
_MARKS = f"tags.{TAG_KEY_PREFIX}"
Loaded = tuple[pl.DataFrame, pl.DataFrame]  # the frame, and run_id + params.* text + the store URI


def store_frames(store: Store, experiments: list[str] | None, run_ids: list[str] | None) -> Loaded:
    """The frame and the raw params of the runs chosen by ``experiments`` / ``run_ids``."""
    selection = (
        tuple(experiments) if experiments is not None else None,
        tuple(run_ids) if run_ids is not None else None,
    )
    version, since, kept = (
        recall(store, selection) if store.kind == "sqlite" else (None, None, None)
    )
    if kept is not None and since == version:
        return kept
    tables = load_tables(store, experiments, run_ids, widen, since if kept is not None else None)
    patched = _patch(kept, tables) if kept is not None and tables.changes is not None else None
    if patched is None and tables.changes is not None:  # whole tables: every run's rows
        tables = load_tables(store, experiments, run_ids, widen)  # from the snapshot just made
    frame, raw = patched if patched is not None else assemble(tables)
    loaded = frame, raw.with_columns(pl.lit(store.uri, dtype=pl.String).alias(URI_COLUMN))
    if version is not None:
        keep(store, selection, version, loaded)
    return loaded


def _unique_originals(pairs: pl.DataFrame) -> dict[str, str] | None:
    """``{sanitised key: original}`` from ``key, value`` rows; None when a key has two originals
    (which one a load from scratch takes depends on the order it reads the tags in)."""
    pairs = pairs.unique()
    if pairs["key"].n_unique() != pairs.height:
        return None
    return dict(zip(pairs["key"].to_list(), pairs["value"].to_list(), strict=True))


def _frame_originals(frame: pl.DataFrame) -> dict[str, str] | None:
    """The renaming the ``tags.hydraflow.key.*`` columns of ``frame`` stand for."""
    columns = [c for c in frame.columns if c.startswith(_MARKS)]
    pairs = [
        frame.select(pl.lit(c.removeprefix(_MARKS)).alias("key"), pl.col(c).alias("value"))
        for c in columns
    ]
    if not pairs:
        return {}
    return _unique_originals(pl.concat(pairs).drop_nulls("value"))


def _sorted_columns(columns: list[str]) -> list[str]:
    """``columns`` in the frame's order: info, then params, metrics and tags each by key."""
    info = [c for c in INFO_COLUMNS if c in columns]
    return info + [
        c for group in _GROUPS for c in sorted(c for c in columns if c.startswith(group))
    ]


def _patch(kept: Loaded, tables: StoreTables) -> Loaded | None:
    """``kept`` (the frame of the last load) with the runs that changed since rebuilt from
    ``tables`` (see the module docstring), the raw params without the store's URI; None when
    only building anew is safe."""
    assert tables.changes is not None
    old, old_raw = kept
    runs = ordered_runs(tables.runs)
    chosen = runs.select("run_id")
    marks = tables.changes.marks.join(chosen, on="run_id", how="semi")
    originals = _unique_originals(
        marks.select(pl.col("key").str.strip_prefix(TAG_KEY_PREFIX), "value")
    )
    if originals is None or originals != _frame_originals(old):
        return None
    moved = runs.join(old.select(INFO_COLUMNS), on=INFO_COLUMNS, how="anti", nulls_equal=True)
    changed = pl.concat([moved["run_id"], tables.changes.run_ids]).unique().to_frame()
    changed = changed.join(chosen, on="run_id", how="semi")
    stays = old.select(
        pl.col("run_id").is_in(chosen["run_id"].implode())
        & ~pl.col("run_id").is_in(changed["run_id"].implode())
    ).to_series()
    if changed.height == 0 and stays.all():
        return old, old_raw.drop(URI_COLUMN)
    part_frame, part_raw = assemble(
        StoreTables(
            runs=tables.runs.join(changed, on="run_id", how="semi"),
            params=tables.params.join(changed, on="run_id", how="semi", maintain_order="left"),
            metrics=tables.metrics.join(changed, on="run_id", how="semi", maintain_order="left"),
            tags=tables.tags.join(changed, on="run_id", how="semi", maintain_order="left"),
        ),
        originals,
    )
    left = not stays.all()  # runs left or were rebuilt: a column may narrow, or empty
    kept_frame, kept_raw = (old.filter(stays), old_raw.filter(stays)) if left else kept
    raw = pl.concat([kept_raw.drop(URI_COLUMN), part_raw], how="diagonal")
    raw = raw.select(_sorted_columns(raw.columns))
    texts = raw.columns[1:]
    typed = (
        type_params(raw.select(texts)).get_columns()
        if left
        else _typed_params(kept_frame, part_frame, raw.select(texts))
    )
    frame = pl.concat(
        [kept_frame.drop(texts, strict=False), part_frame.drop(texts, strict=False)],
        how="diagonal",
    ).hstack(typed)
    order = frame.select(pl.arg_sort_by("start_time", "run_id", nulls_last=True)).to_series()
    if not (order == pl.int_range(len(order), eager=True)).all():
        frame, raw = frame[order], raw[order]
    empty = [c for c in frame.columns if left and c.startswith(_GROUPS) and not frame[c].count()]
    frame = frame.drop(empty).select(_sorted_columns([c for c in frame.columns if c not in empty]))
    return frame, raw.drop([c for c in empty if c in raw.columns])


def _typed_params(old: pl.DataFrame, part: pl.DataFrame, text: pl.DataFrame) -> list[pl.Series]:
    """The params columns of ``old`` rows then ``part`` rows (each typed over its own rows),
    typed as :func:`type_params` types them over all the rows' ``text``: where both parts have
    the same type, or one part lacks the column, that type holds for all; else the column is
    typed again over all its text."""
    columns = []
    for name in text.columns:
        pieces = [
            frame.get_column(name)
            if name in frame.columns
            else pl.Series(name, dtype=pl.Null).extend_constant(None, frame.height)
            for frame in (old, part)
        ]
        types = {piece.dtype for piece in pieces} - {pl.Null}
        if len(types) == 1:
            dtype = types.pop()
            columns.append(pl.concat([piece.cast(dtype) for piece in pieces]))
        else:
            columns.append(type_params(text.select(name)).to_series())
    return columns
