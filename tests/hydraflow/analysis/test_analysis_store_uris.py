"""Store URIs are read exactly as MLflow reads them: each form is checked against MLflow's own
resolution (SQLAlchemy's URL parser for sqlite, ``local_file_uri_to_path`` for file stores) and by
logging a run through MlflowClient with that URI and reading it back."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from sqlalchemy.engine import make_url

from hydraflow import RunCollection
from hydraflow.cli import main
from hydraflow.core.errors import StoreNotFoundError
from hydraflow.core.store import open_store, sqlite_database


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///mlflow.db",
        "sqlite:///./sub/runs.db",
        "sqlite:////abs/dir/mlflow.db",
        "sqlite:///mlflow.db?timeout=20",
        "sqlite://///abs/extra-slash.db",
        "sqlite:///with%20space.db",
    ],
)
def test_sqlite_database_matches_sqlalchemy(uri: str) -> None:
    assert sqlite_database(uri) == make_url(uri).database


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return tmp_path


def _log_one_run(uri: str, experiment: str = "uris") -> str:
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment(experiment))
    client.log_param(run.info.run_id, "form", uri)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _sqlite_forms(root: Path) -> list[tuple[str, Path]]:
    """(URI, the file MLflow opens for it) — where the template store is copied beforehand.

    File names are unique to the test: MLflow keeps one engine per URI for the whole process, so
    a relative URI some other test used would still point into that test's folder."""
    name = f"{root.name}.db"
    return [
        (f"sqlite:///{name}", root / name),
        (f"sqlite:///./nested/{name}", root / "nested" / name),
        (f"sqlite:///{root / 'abs.db'}", root / "abs.db"),
        (f"sqlite:///{name}?timeout=30", root / name),
        (name, root / name),
    ]


def test_every_sqlite_form_reads_the_file_mlflow_wrote(
    in_tmp: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number, (uri, file) in enumerate(_sqlite_forms(in_tmp)):
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            shutil.copy(migrated_store, file)  # migrated already: MLflow only opens it
        writer_uri = uri if uri.startswith("sqlite:") else f"sqlite:///{uri}"
        run_id = _log_one_run(writer_uri, f"uris-{number}")
        assert file.stat().st_size > 0
        store = open_store(uri)
        assert store.kind == "sqlite" and store.path == file.resolve()
        runs = RunCollection.load(f"uris-{number}", tracking_uri=uri)
        assert runs["run_id"].to_list() == [run_id]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", writer_uri)  # the default store, as MLflow's
        assert RunCollection.load(f"uris-{number}")["run_id"].to_list() == [run_id]
        monkeypatch.delenv("MLFLOW_TRACKING_URI")


def test_cli_reads_mlflows_relative_sqlite_uri_from_the_environment(
    in_tmp: Path,
    migrated_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    relative = f"sqlite:///{in_tmp.name}.db"  # as sqlite:///mlflow.db, unique to this test
    shutil.copy(migrated_store, in_tmp / f"{in_tmp.name}.db")
    run_id = _log_one_run(relative)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relative)
    assert main(["runs", "uris", "--json"]) == 0
    assert run_id in capsys.readouterr().out


@pytest.mark.parametrize(
    "form",
    ["file:{rel}", "file:./{rel}", "file://{abs}", "{rel}", "./{rel}", "{abs}"],
)
def test_every_file_store_form_reads_the_folder_mlflow_wrote(in_tmp: Path, form: str) -> None:
    rel = f"{in_tmp.name}/mlruns"  # unique: MLflow keeps one store per URI for the process
    uri = form.format(rel=rel, abs=in_tmp / rel)
    run_id = _log_one_run(uri)
    expected = Path(os.path.abspath(local_file_uri_to_path(uri)))
    assert (expected / "0").is_dir() or any(expected.iterdir())
    store = open_store(uri)
    assert store.kind == "file" and store.path == expected.resolve()
    assert RunCollection.load("uris", tracking_uri=uri)["run_id"].to_list() == [run_id]


def test_an_in_memory_or_missing_sqlite_store_is_one_clear_error(in_tmp: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="in-memory"):
        open_store("sqlite://")
    with pytest.raises(StoreNotFoundError, match=r"no file .*nothere\.db"):
        open_store("sqlite:///nothere.db")
    assert not (in_tmp / "nothere.db").exists()
