"""The frame RunCollection builds equals what ``mlflow.search_runs`` returns, on every kind of store."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import mlflow
import polars as pl
import pytest
from analysis_stores import ODD_KEY, StoreData
from polars.testing import assert_frame_equal

from hydraflow import RunCollection
from hydraflow.conventions import TAG_KEY_PREFIX, parse_param_value, sanitize_key


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _assert_equals_search_runs(runs: RunCollection, uri: str, experiments: list[str]) -> None:
    """Every value ``mlflow.search_runs`` shows for ``experiments`` is in ``runs``'s frame."""
    ours = runs.to_frame()
    mlflow.set_tracking_uri(uri)
    try:
        theirs = mlflow.search_runs(experiment_names=experiments)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    assert sorted(ours["run_id"].to_list()) == sorted(theirs["run_id"].tolist())
    raw = {row["run_id"]: row for row in runs._raw.iter_rows(named=True)}
    renamed = {f"params.{sanitize_key(ODD_KEY)}": f"params.{ODD_KEY}"}
    by_id = {row["run_id"]: row for row in ours.iter_rows(named=True)}
    for expected in theirs.to_dict("records"):
        row = by_id[expected["run_id"]]
        for column, value in expected.items():
            present = not (value is None or (isinstance(value, float) and math.isnan(value)))
            if column in ("start_time", "end_time"):
                assert row[column].timestamp() == value.timestamp(), column
            elif column.startswith("params."):
                ours_column = renamed.get(column, column)
                assert raw[expected["run_id"]].get(ours_column) == (value if present else None), (
                    column
                )
                typed = row.get(ours_column)
                if present and typed is not None:
                    assert _same(typed, parse_param_value(value)) or typed == value, column
            elif column.startswith("metrics."):
                if isinstance(value, float) and math.isnan(value):  # NaN in pandas: NaN or absent
                    assert row.get(column) is None or math.isnan(row[column]), column
                else:
                    assert _same(row[column], value), column
            else:
                assert row[column] == (value if present else None), column
        assert row["experiment"] in experiments


def test_frame_equals_search_runs(any_store: StoreData) -> None:
    runs = RunCollection.load(
        ["train", "other"], tracking_uri=any_store.uri, include_sweep_runs=True
    )
    assert len(runs) == 8  # sweep parent + 6 jobs + other; the deleted run is not there
    _assert_equals_search_runs(runs, any_store.uri, ["train", "other"])


def test_a_small_part_of_a_sqlite_store_equals_search_runs(sqlite_store: StoreData) -> None:
    """One run of nine: the loader reads only that run's rows (not whole tables), same frame."""
    runs = RunCollection.load("other", tracking_uri=sqlite_store.uri)
    assert runs["run_id"].to_list() == [sqlite_store.other_id]
    _assert_equals_search_runs(runs, sqlite_store.uri, ["other"])
    runs = RunCollection.load("train", tracking_uri=sqlite_store.uri, include_sweep_runs=True)
    _assert_equals_search_runs(runs, sqlite_store.uri, ["train"])


def test_a_tracking_server_is_read_page_by_page(
    server_store: StoreData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 3 runs (8 runs: 3 pages, the last one short): the same frame as one page."""
    from hydraflow.core.loaders import rest

    whole = RunCollection.load(["train", "other"], tracking_uri=server_store.uri).to_frame()
    requests: list[str] = []
    real = rest.request

    def counted(client: Any, method: str, path: str, **arguments: Any) -> dict[str, Any]:
        requests.append(path)
        return real(client, method, path, **arguments)

    monkeypatch.setattr(rest, "_PAGE", 3)
    monkeypatch.setattr(rest, "request", counted)
    paged = RunCollection.load(["train", "other"], tracking_uri=server_store.uri).to_frame()
    assert requests.count("/api/2.0/mlflow/runs/search") == 3
    assert_frame_equal(paged, whole)


def test_params_are_typed_per_column_and_late_keys_kept(sqlite_store: StoreData) -> None:
    frame = RunCollection.load("train", tracking_uri=sqlite_store.uri).to_frame()
    schema = frame.schema
    assert schema["params.lr"] == pl.Float64
    assert schema["params.batch"] == pl.Int64
    assert schema["params.use_amp"] == pl.Boolean
    assert schema["params.model.type"] == pl.String
    assert schema["params.layers"] == pl.String  # JSON text stays text in the frame
    assert schema["params.mixed"] == pl.String  # "auto" among numbers: the column stays text
    assert schema["params.maybe"] == pl.Int64  # "None" is a null in a numeric column
    assert frame["params.maybe"].to_list()[0] is None
    assert frame["params.extra"].to_list() == [None, None, None, None, "late-4", "late-5"]
    assert schema["start_time"] == pl.Datetime("us", "UTC")


def test_sanitised_key_comes_back_under_its_original_name(sqlite_store: StoreData) -> None:
    runs = RunCollection.load("train", tracking_uri=sqlite_store.uri)
    assert f"params.{ODD_KEY}" in runs.to_frame().columns
    assert runs[0].params[ODD_KEY] == 0.5
    assert runs[0].tags[f"{TAG_KEY_PREFIX}{sanitize_key(ODD_KEY)}"] == ODD_KEY


def test_nan_metric_is_nan_not_missing(any_store: StoreData) -> None:
    runs = RunCollection.load("train", tracking_uri=any_store.uri)
    values = runs.to_frame()["metrics.val"].to_list()
    assert values[2] is not None and math.isnan(values[2])
    assert values[0] is None


@pytest.mark.parametrize(
    ("values", "dtype", "typed"),
    [
        (["1", "99999999999999999999999"], pl.String, None),  # beyond Int64: exact text kept
        (["1", "-2"], pl.Int64, [1, -2]),
        (["1", "2.5e-3"], pl.Float64, [1.0, 0.0025]),
        (["x", None], pl.String, None),
        (["True", "None"], pl.Boolean, [True, None]),
        (["None", "None"], pl.String, None),
        # the first present value past the rows looked at first
        (["None"] * 70 + ["3", "4"], pl.Int64, [None] * 70 + [3, 4]),
        (["1", "null", "2.5", "4"], pl.Float64, [1.0, None, 2.5, 4.0]),  # ints, then a float
        (["0.5"] * 71 + ["x"], pl.String, None),  # numbers, then a word
        (["True"] * 71 + ["1"], pl.String, None),  # flags, then a digit
        (["7"] * 71 + ["99999999999999999999999"], pl.String, None),  # digits past Int64
    ],
)
def test_param_typing_rules(
    values: list[str | None], dtype: pl.DataType, typed: list[object]
) -> None:
    from hydraflow.core.frame import type_params

    raw = pl.DataFrame(
        {"params.p": values, "tags.t": values}, schema={"params.p": pl.String, "tags.t": pl.String}
    )
    frame = type_params(raw)
    assert frame.schema["params.p"] == dtype
    assert frame["params.p"].to_list() == (values if typed is None else typed)  # text: MLflow's
    assert frame["tags.t"].to_list() == values  # only params are typed


def test_long_rows_become_columns_in_run_order() -> None:
    from hydraflow.core.errors import HydraflowError
    from hydraflow.core.frame import _wide

    long = pl.DataFrame(
        {
            "run_id": ["a", "b", "gone", "a"],
            "key": ["k2", "k1", "k1", "k1"],
            "value": ["a2", "b1", "x", "a1"],
        }
    )
    wide = pl.DataFrame(_wide(long, pl.Series(["b", "a", "c"]), "params."))
    assert wide.to_dict(as_series=False) == {
        "params.k1": ["b1", "a1", None],  # runs in the order asked, a run without rows all null
        "params.k2": [None, "a2", None],  # a run not asked for ("gone") left out
    }
    with pytest.raises(HydraflowError, match="same params key twice"):
        _wide(pl.concat([long, long]), pl.Series(["a", "b"]), "params.")


@pytest.mark.parametrize("experiments", [["train"], ["other"]])  # whole tables; one run's rows
def test_sqlite_loader_widens_each_table_as_it_reads_it(
    sqlite_store: StoreData, experiments: list[str]
) -> None:
    from hydraflow.core.frame import WidePart, assemble, widen
    from hydraflow.core.loaders import load_tables
    from hydraflow.core.loaders.sqlite_cache import forget
    from hydraflow.core.store import open_store

    store = open_store(sqlite_store.uri)
    forget(store)
    tables = load_tables(store, experiments, None, widen)
    frame, _ = assemble(tables)
    assert set(tables.wide) == {"params", "metrics", "tags"}
    for part in tables.wide.values():  # in the frame's order: assemble can use them as they are
        assert isinstance(part, WidePart) and part.run_ids.equals(frame["run_id"])
    assert_frame_equal(frame, assemble(dataclasses.replace(tables, wide={}))[0])
