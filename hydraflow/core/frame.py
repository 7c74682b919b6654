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
_DIGITS = r"^[+-]?\d+$"
_PEEK = 64  # rows in which a column's first present value is looked for first


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


def _present_firsts(raw: pl.DataFrame, columns: list[str]) -> dict[str, str | None]:
    """The first value of each column that is neither null nor a null word (None: no such value);
    the first rows decide for most columns, the whole column only for the others."""
    firsts = raw.head(_PEEK).select(pl.col(columns).replace(_NULL_WORDS, None).drop_nulls().first())
    found: dict[str, str | None] = firsts.row(0, named=True) if firsts.height else {}
    rest = [c for c in columns if found.get(c) is None]
    if rest and raw.height > _PEEK:
        later = raw.select(pl.col(rest).replace(_NULL_WORDS, None).drop_nulls().first())
        found.update(later.row(0, named=True))
    return {c: found.get(c) for c in columns}


def _kinds(firsts: dict[str, str | None]) -> dict[str, str]:
    """What each column may be, judged by its first present value: ``bool``, ``int`` (digits: an
    integer, or digits beyond Int64 that a column of would keep as text), ``float``; columns whose
    first value is none of them are left out."""
    present = {c: v for c, v in firsts.items() if v is not None}
    if not present:
        return {}
    values = pl.Series(list(present.values()), dtype=pl.String)
    probes = pl.DataFrame(
        {
            "int": values.cast(pl.Int64, strict=False).is_not_null(),
            "float": values.cast(pl.Float64, strict=False).is_not_null(),
            "digits": values.str.contains(_DIGITS),
        }
    )
    kinds: dict[str, str] = {}
    for column, value, (is_int, is_float, digits) in zip(
        present, present.values(), probes.iter_rows(), strict=True
    ):
        if value in _BOOL_WORDS:
            kinds[column] = "bool"
        elif is_int or (digits and is_float):
            kinds[column] = "int"
        elif is_float:
            kinds[column] = "float"
    return kinds


def _typed(column: str, kind: str) -> pl.Expr:
    """``column`` as ``kind``: null where a value is not of that kind (null words among them)."""
    if kind == "bool":
        return pl.col(column).replace_strict(_BOOL_WORDS, return_dtype=pl.Boolean, default=None)
    return pl.col(column).cast(pl.Int64 if kind == "int" else pl.Float64, strict=False)


def _misfits(raw: pl.DataFrame, typed: pl.DataFrame) -> list[str]:
    """The columns of ``typed`` (made by :func:`_typed` from ``raw``) where a value that is not a
    null word became null."""
    before, after = raw.null_count().row(0, named=True), typed.null_count().row(0, named=True)
    suspects = [c for c in typed.columns if after[c] != before[c]]
    if not suspects:
        return []
    words = raw.select(pl.col(suspects).is_in(_NULL_WORDS).sum()).row(0, named=True)
    return [c for c in suspects if after[c] != before[c] + words[c]]


def type_params(raw: pl.DataFrame) -> pl.DataFrame:
    """Type each ``params.*`` text column as a whole (see module docstring).

    A column's first present value picks the one type it may have; one cast of the column to that
    type is both the check (no value but the null words became null) and the result. Only where
    integers fail is the column tried as floats (or kept as text: digits beyond Int64).
    """
    columns = [c for c in raw.columns if c.startswith("params.") and raw.schema[c] == pl.String]
    if not columns or raw.height == 0:
        return raw
    kinds = _kinds(_present_firsts(raw, columns))
    if not kinds:
        return raw
    typed = raw.select(_typed(c, kind) for c, kind in kinds.items())
    failed = _misfits(raw, typed)
    retry = [c for c in failed if kinds[c] == "int"]
    keep = [c for c in typed.columns if c not in failed]
    if retry:
        floats = raw.select(_typed(c, "float") for c in retry)
        numbers = [c for c in retry if c not in _misfits(raw, floats)]
        if numbers:  # a column of digits only is text (beyond Int64), any other number: floats
            digits = raw.select(
                (pl.col(numbers).str.contains(_DIGITS) | pl.col(numbers).is_in(_NULL_WORDS))
                .fill_null(True)
                .all()
            ).row(0, named=True)
            texts = [c for c in numbers if digits[c]]
            typed = typed.with_columns(
                floats.select(c for c in numbers if c not in texts).get_columns()
            )
            keep += [c for c in numbers if c not in texts]
    return raw.with_columns(typed.select(keep).get_columns()) if keep else raw


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
