"""A new sqlite MLflow store, copied from an empty migrated one instead of migrated again.

MLflow creates a new sqlite store by running every schema migration of its history (alembic),
seconds of CPU each time: for a sweep's first store, and on remote hosts for every job (each logs
into a store of its own in its output folder). The first store this user makes with an MLflow
version is migrated as MLflow does, then kept (without its ``Default`` experiment) in the user's
cache folder (``$XDG_CACHE_HOME/hydraflow``, else ``~/.cache/hydraflow``) under that version's
name; every later new store is a copy of it. MLflow adds the ``Default`` experiment when it first
opens the copy, as it does for a store it migrated itself (with its artifact location resolved
then, not the template's).

Anything unusual (a URI that is not a plain sqlite file, no writable cache folder, a file system
without hard links) leaves the store to MLflow, as before.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from pathlib import Path

__all__ = ["create_from_template"]

_PREFIX = "sqlite:///"


def create_from_template(tracking_uri: str) -> bool:
    """Create the sqlite store of ``tracking_uri`` from the cached template if it does not exist.

    Returns whether it did (``False``: the store exists, is not a sqlite file, or the template
    could not be used; MLflow then does what it always does).
    """
    path = _new_sqlite_file(tracking_uri)
    if path is None:
        return False
    try:
        template = _template()
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        shutil.copyfile(template, staged)
        try:
            os.link(staged, path)  # never over a store another process created meanwhile
        except FileExistsError:
            return False
        finally:
            staged.unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        return False
    return True


def _new_sqlite_file(tracking_uri: str) -> Path | None:
    """The file of a sqlite store URI (read as MLflow reads it) whose file does not exist yet, else
    ``None`` (an in-memory database, or a URI with options, is left to MLflow)."""
    if not tracking_uri.startswith("sqlite:") or "?" in tracking_uri:
        return None
    from hydraflow.core.store import sqlite_database

    name = sqlite_database(tracking_uri)
    if not name or name == ":memory:":
        return None
    path = Path(name)
    return None if path.exists() else path


def _cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hydraflow"


def _template() -> Path:
    """The empty migrated store of this MLflow version, made (once per user and version) if
    missing."""
    from mlflow.version import VERSION

    folder = _cache_folder()
    template = folder / f"mlflow-{VERSION}-empty.db"
    if template.is_file():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f".{template.name}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        _migrate(staged)
        with sqlite3.connect(staged) as db:  # MLflow adds it back, located, on first open
            db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")
        db.close()
        os.replace(staged, template)  # whole or not at all; a concurrent maker's is as good
    finally:
        staged.unlink(missing_ok=True)
    return template


def _migrate(path: Path) -> None:
    """Create a store at ``path`` as MLflow does (every migration), and let go of the file."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"{_PREFIX}{path}", (path.parent / "unused-artifacts").as_uri())
    store.engine.dispose()
