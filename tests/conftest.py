"""Fixtures shared by every test package (keep this file minimal).

``sshd``: a real OpenSSH server on loopback for the session (see ``tests/sshd.py``); other test
modules import its helpers with ``from sshd import SSHServer`` (``tests/`` is on ``sys.path``).
``slurm``: a real one-node SLURM cluster for the session (see ``tests/slurm.py``).
``migrated_store``: an empty MLflow sqlite store to copy, migrated once per session.
``tracking_server``: one real ``mlflow server`` for the session (see ``tests/mlflow_server.py``);
tests that share it write to experiments of their own names.

Marker ``run_last``: the test runs after every other one. For a test that checks on something an
earlier test started and that takes wall time, not CPU (a SLURM job waiting out its one-minute time
limit): the rest of the suite runs meanwhile instead of the test sleeping.

Every test ends with MLflow's process-wide tracking URI as it found it (``mlflow_globals_restored``).
"""

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_server import TrackingServer, mlflow_server
from slurm import slurm
from sshd import sshd

__all__ = ["migrated_store", "slurm", "sshd", "tracking_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "run_last: run after every other test (it waits on something started earlier)"
    )
    # A SIGTERM (`timeout 1500 pytest`, a CI job cancelled) ends the session as Ctrl-C does, so
    # the session fixtures' daemons (sshd, SLURM, mlflow server) are stopped, not left running.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"pytest got signal {signum}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests marked ``run_last`` to the end (a stable sort keeps every other order)."""
    items.sort(key=lambda item: item.get_closest_marker("run_last") is not None)


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """Undo the root logger's handlers and level a Hydra app run in this process set up: Hydra's
    job logging writes to the ``sys.stderr`` of that test, which pytest closes after it, and a
    later test logging through it got a "Logging error" report in its output instead."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def mlflow_globals_restored() -> Iterator[None]:
    """Undo a test's ``mlflow.set_tracking_uri``: it sets a module global that wins over
    ``MLFLOW_TRACKING_URI`` *and* writes that variable into ``os.environ`` behind monkeypatch's
    back, so later tests in this process (and every process they start) wrote to the store of a
    test long gone."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None and getattr(tracking, "_tracking_uri", None) is not None:
        tracking.set_tracking_uri(None)  # the global, and the variable it set
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store with its schema created once (migrating one takes seconds;
    ``client_for`` copies the user's cached template of this MLflow version, made if missing)."""
    from hydraflow._mlflow_store import client_for

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    client_for(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def tracking_server(
    tmp_path_factory: pytest.TempPathFactory, migrated_store: Path
) -> Iterator[TrackingServer]:
    """One real ``mlflow server`` (sqlite backend, served artifacts) on loopback for the session.

    Starting one takes 15-60 s on a loaded 2-core machine, so the tests that need a server share
    it; each writes to experiments of its own names (the analysis stores: ``train`` and ``other``;
    the pipeline: ``pipeline``; the remote sweeps: ``remote_app``).
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(root, migrated_store) as uri:
        yield TrackingServer(uri=uri, root=root)
