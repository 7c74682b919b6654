"""Fixtures shared by every test package (keep this file minimal).

``sshd``: a real OpenSSH server on loopback for the session (see ``tests/sshd.py``); other test
modules import its helpers with ``from sshd import SSHServer`` (``tests/`` is on ``sys.path``).
``slurm``: a real one-node SLURM cluster for the session (see ``tests/slurm.py``).
``migrated_store``: an empty MLflow sqlite store to copy, migrated once per session.
"""

from pathlib import Path

import pytest
from slurm import slurm
from sshd import sshd

__all__ = ["migrated_store", "slurm", "sshd"]


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store with its schema created once (migrating one takes seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path
