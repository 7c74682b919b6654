"""The shared MLflow conventions: what a config becomes in MLflow, and back."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from hydraflow import conventions as conv


def test_flatten_joins_nested_keys_and_keeps_lists_as_json() -> None:
    cfg = {"model": {"type": "lstm", "layers": [64, 32]}, "lr": 0.001, "opt": {}, "seed": None}
    assert conv.flatten_config(cfg) == {
        "model.type": "lstm",
        "model.layers": "[64, 32]",
        "lr": "0.001",
        "opt": "{}",
        "seed": "None",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("0.001", 0.001),
        ("1e-4", 1e-4),
        ("True", True),
        ("False", False),
        ("None", None),
        ("[64, 32]", [64, 32]),
        ('{"a": 1}', {"a": 1}),
        ("lstm", "lstm"),
        ("[not json", "[not json"),
        ("", ""),
    ],
)
def test_param_text_is_typed_back(text: str, value: object) -> None:
    assert conv.parse_param_value(text) == value


def test_flatten_then_parse_round_trips_a_config() -> None:
    cfg = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": 2.5, "f": False}
    typed = {k: conv.parse_param_value(v) for k, v in conv.flatten_config(cfg).items()}
    assert typed == {"a.b": 1, "a.c": [1, 2], "d": "x", "e": 2.5, "f": False}


@pytest.mark.parametrize("key", ["a@b", "x/../y", "/abs", "..", "a" * 300, "tab\tkey", "ok key"])
def test_sanitized_keys_are_accepted_by_mlflow(
    key: str, tmp_path: Path, migrated_store: Path
) -> None:
    safe = conv.sanitize_key(key)
    shutil.copyfile(migrated_store, tmp_path / "m.db")  # a new store, already migrated
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.create_experiment("e")
    run = client.create_run(exp)
    client.log_param(run.info.run_id, safe, "v")  # raises if MLflow rejects the key
    assert client.get_run(run.info.run_id).data.params[safe] == "v"


def test_valid_keys_are_left_alone_and_different_bad_keys_do_not_collide() -> None:
    assert conv.sanitize_key("model.type") == "model.type"
    assert conv.sanitize_key("a@b") != conv.sanitize_key("a#b")


def test_config_hash_is_stable_and_order_independent() -> None:
    a = conv.config_hash({"x": 1, "y": {"z": [1, 2]}})
    assert a == conv.config_hash({"y": {"z": [1, 2]}, "x": 1})
    assert a != conv.config_hash({"x": 2, "y": {"z": [1, 2]}})


def test_return_value_metrics() -> None:
    assert conv.return_value_metrics(0.5) == {"return_value": 0.5}
    assert conv.return_value_metrics({"acc": 1, "loss": 0.2}) == {"acc": 1.0, "loss": 0.2}
    assert conv.return_value_metrics({"acc": "high"}) is None
    assert conv.return_value_metrics(True) is None
    assert conv.return_value_metrics([1, 2]) is None


def test_tracking_uri_is_absolute_and_env_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = conv.resolve_tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert conv.resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert conv.artifact_location_for(uri) == (tmp_path / "mlartifacts").resolve().as_uri()
