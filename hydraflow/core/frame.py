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

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from hydraflow.conventions import TAG_KEY_PREFIX
from hydraflow.core._parallel import worker_count
from hydraflow.core.errors import HydraflowError
from hydraflow.core.loaders.tables import RUNS_SCHEMA, StoreTables

INFO_COLUMNS = list(RUNS_SCHEMA)
_NULL_WORDS = ["None", "null"]
_BOOL_WORDS = {"True": True, "true": True, "False": False, "false": False}
_FEW_RUNS = 1000


def _wide(long: pl.DataFrame, run_ids: pl.Series, prefix: str) -> list[pl.Series]:
    """``long``'s values as one column per key (named ``prefix`` + key, sorted by key), one row per
    run of ``run_ids`` in that order; rows of other runs are left out.

    Value ``v`` of run number ``r`` and key number ``k`` goes to slot ``k × runs + r`` of one long
    column whose slices are the columns: the run ids are hashed once (a join of that one column)
    and the keys once (into enum codes); nothing is grouped (cheaper than ``pivot``).
    """
    n = run_ids.len()
    if long.height == 0 or n == 0:
        return []
    numbers = pl.DataFrame([run_ids.alias("run_id")]).with_row_index("number")
    run = long.select("run_id").join(numbers, on="run_id", how="left", maintain_order="left")
    slot = long.select(
        run["number"].cast(pl.Int64).alias("run_id"),
        pl.col("key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
    )
    if slot["run_id"].null_count():  # rows of runs not asked for
        slot = slot.drop_nulls("run_id")
    if slot.height == 0:
        return []
    keys = sorted(slot["key"].unique().to_list())
    slot = slot.select(
        pl.col("key").cast(pl.Enum(keys)).to_physical().cast(pl.Int64) * n + pl.col("run_id"),
        "row",
    )
    rows = pl.Series(values=[None], dtype=pl.Int64).extend_constant(None, len(keys) * n - 1)
    rows = rows.scatter(slot["key"], slot["row"])
    if rows.null_count() != len(keys) * n - slot.height:
        raise HydraflowError(f"a run has the same {prefix.rstrip('.')} key twice in the store.")
    values = long["value"].gather(rows)
    return [values.slice(k * n, n).alias(f"{prefix}{key}") for k, key in enumerate(keys)]


def _fitting(
    text: pl.DataFrame, first: pl.DataFrame, columns: list[str], fits: Callable[[pl.Expr], pl.Expr]
) -> list[str]:
    """The ``columns`` of ``text`` whose every present value ``fits``: the first present value of
    each (``first``, one row) rules most columns out, a full pass runs on the others only."""
    if not columns:
        return []
    first_fits = first.select(fits(pl.col(columns)).fill_null(False)).row(0, named=True)
    candidates = [c for c in columns if first_fits[c]]
    if not candidates:
        return []
    values = pl.col(candidates)
    misfits = text.select((values.is_not_null() & ~fits(values)).sum()).row(0, named=True)
    return [c for c in candidates if not misfits[c]]


def type_params(raw: pl.DataFrame) -> pl.DataFrame:
    """Type each ``params.*`` text column as a whole (see module docstring).

    Each probe (boolean, number, digits, integer) looks at a column's first present value, then at
    all its values only if that one fits; the integer probes only at columns of numbers.
    """
    columns = [c for c in raw.columns if c.startswith("params.") and raw.schema[c] == pl.String]
    if not columns or raw.height == 0:
        return raw
    text = raw.select(pl.col(columns).replace(_NULL_WORDS, None))
    first = text.select(pl.col(columns).drop_nulls().first())
    flags = _fitting(text, first, columns, lambda v: v.is_in(list(_BOOL_WORDS)))
    others = [c for c in columns if c not in flags]
    numbers = _fitting(
        text, first, others, lambda v: v.cast(pl.Float64, strict=False).is_not_null()
    )
    digits = _fitting(text, first, numbers, lambda v: v.str.contains(r"^[+-]?\d+$"))
    # A column of digits beyond Int64 is neither: its exact text is kept.
    ints = _fitting(text, first, digits, lambda v: v.cast(pl.Int64, strict=False).is_not_null())
    floats = [c for c in numbers if c not in digits]
    casts = []
    if flags:
        bools = pl.col(flags).replace_strict(_BOOL_WORDS, return_dtype=pl.Boolean, default=None)
        casts.append(bools)
    if ints:
        casts.append(pl.col(ints).cast(pl.Int64, strict=False))
    if floats:
        casts.append(pl.col(floats).cast(pl.Float64, strict=False))
    return raw.with_columns(text.select(casts).get_columns()) if casts else raw


def _original_keys(tags: pl.DataFrame) -> dict[str, str]:
    """``{sanitised: original}`` from the ``hydraflow.key.*`` tags the callback writes."""
    marks = tags.filter(pl.col("key").str.starts_with(TAG_KEY_PREFIX)).unique(["key", "value"])
    mapping: dict[str, str] = {}
    for key, value in marks.select("key", "value").iter_rows():
        mapping[key.removeprefix(TAG_KEY_PREFIX)] = value
    return mapping


@dataclass(frozen=True)
class WidePart:
    """One long table made columns (:func:`widen`): rows in the order of ``run_ids``; for params,
    ``columns`` are typed and ``text`` keeps MLflow's text."""

    run_ids: pl.Series
    columns: list[pl.Series]
    text: list[pl.Series]


_LAST_ORDER: list[tuple[pl.DataFrame, pl.DataFrame]] = []  # the runs of the last load, ordered
_ORDER_GUARD = threading.Lock()


def ordered_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """The info columns of ``runs`` (times as UTC datetimes) in the frame's row order: by start
    time (none last), then run id. Made once per runs frame: the first of a loader's threads to
    widen a table makes it, the others and :func:`assemble` take it."""
    with _ORDER_GUARD:
        if _LAST_ORDER and _LAST_ORDER[0][0] is runs:
            return _LAST_ORDER[0][1]
    info = runs.cast(RUNS_SCHEMA).with_columns(  # type: ignore[arg-type]
        pl.from_epoch(pl.col(c), time_unit="ms").dt.replace_time_zone("UTC").alias(c)
        for c in ("start_time", "end_time")
    )
    info = info.sort("start_time", "run_id", nulls_last=True).select(INFO_COLUMNS)
    with _ORDER_GUARD:
        _LAST_ORDER[:] = [(runs, info)]
    return info


def _widen(name: str, long: pl.DataFrame, run_ids: pl.Series) -> WidePart:
    columns = _wide(long, run_ids, f"{name}.")
    if name != "params":
        return WidePart(run_ids, columns, [])
    typed = type_params(pl.DataFrame(columns, schema={c.name: c.dtype for c in columns}))
    return WidePart(run_ids, typed.get_columns(), columns)


def widen(name: str, long: pl.DataFrame, runs: pl.DataFrame) -> WidePart:
    """``long`` (``params``, ``metrics`` or ``tags``, rows of ``runs``' runs) as the frame's
    columns; a loader runs this on each table as it is read (:data:`~.tables.Widen`)."""
    return _widen(name, long, ordered_runs(runs)["run_id"])


def assemble(
    tables: StoreTables, originals: dict[str, str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The typed wide frame and the raw-text params frame (``run_id`` + ``params.*``), same order.

    The tables a loader did not widen already (:func:`widen`) are widened here, in threads: polars
    releases the GIL, so they overlap on several cores. Params whose keys the callback had to
    sanitise (``hydraflow.key.*`` tags; ``originals`` when given: ``{sanitised: original}``) are
    widened again under their original names.
    """
    runs = ordered_runs(tables.runs)
    run_ids = runs["run_id"]
    longs = {"params": tables.params, "metrics": tables.metrics, "tags": tables.tags}
    parts = {
        name: part
        for name, part in tables.wide.items()
        if isinstance(part, WidePart) and part.run_ids.equals(run_ids)
    }
    if originals is None:
        originals = _original_keys(tables.tags)
    if originals:
        longs["params"] = tables.params.with_columns(pl.col("key").replace(originals))
        parts.pop("params", None)
    missing = [name for name in longs if name not in parts]
    if run_ids.len() < _FEW_RUNS:  # a thread would cost more than the work
        parts.update({name: _widen(name, longs[name], run_ids) for name in missing})
    else:
        with ThreadPoolExecutor(max_workers=worker_count(len(missing))) as pool:
            jobs = {name: pool.submit(_widen, name, longs[name], run_ids) for name in missing}
            parts.update({name: job.result() for name, job in jobs.items()})
    columns = [column for name in longs for column in parts[name].columns]
    return runs.hstack(columns), pl.DataFrame([run_ids, *parts["params"].text])
