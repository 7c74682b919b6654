"""Where runs live: turn a tracking URI (or a path) into a store descriptor the loaders understand."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlparse

from hydraflow.conventions import resolve_tracking_uri
from hydraflow.core.errors import StoreNotFoundError

StoreKind = Literal["sqlite", "file", "rest"]


@dataclass(frozen=True)
class Store:
    """A tracking store: its kind, the URI MLflow uses for it, and its local path or base URL."""

    kind: StoreKind
    uri: str
    location: str

    @property
    def path(self) -> Path:
        """The sqlite file or the file-store root (local stores only)."""
        return Path(self.location)

    @property
    def readonly_uri(self) -> str:
        """SQLite's URI for reading the file without ever creating or changing it."""
        return f"file:{quote(self.location)}?mode=ro"


def _file_uri_path(uri: str) -> str:
    """A ``file:`` URI's path as MLflow reads it (``local_file_uri_to_path``: the netloc is dropped,
    the path unquoted, and a relative path stays relative to the working directory)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def sqlite_database(uri: str) -> str:
    """The database file of a ``sqlite:`` URI, as SQLAlchemy (hence MLflow) reads it.

    ``sqlite:///mlflow.db`` is ``mlflow.db`` relative to the working directory and
    ``sqlite:////abs/mlflow.db`` is ``/abs/mlflow.db``: the path is everything after the slash
    that follows the (empty) host, up to a ``?query``, percent-decoded. ``sqlite://`` alone is an
    in-memory database, returned as ``""``.
    """
    rest = uri.removeprefix("sqlite:").removeprefix("//")
    rest = rest.split("?", 1)[0]
    _host, slash, database = rest.partition("/")
    return unquote(database) if slash else ""


def _sqlite_store(path: Path) -> Store:
    """A sqlite store; its URI percent-encodes the path (as SQLAlchemy decodes it: ``?``, ``#``)."""
    resolved = path.resolve()
    return Store("sqlite", f"sqlite:///{quote(str(resolved))}", str(resolved))


def open_store(tracking_uri: str | os.PathLike[str] | None = None) -> Store:
    """Describe the store at ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``).

    Accepts ``sqlite:///path``, ``file:///path``, a plain path (a ``.db`` file or an ``mlruns``
    directory) and ``http(s)://host:port`` for a tracking server. A local store that does not exist is
    an error: reading never creates an empty store.

    Raises:
        StoreNotFoundError: The sqlite file or the file-store directory does not exist.
    """
    uri = str(tracking_uri) if tracking_uri is not None else resolve_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return Store("rest", uri, uri.rstrip("/"))
    if uri.startswith("sqlite:"):
        database = sqlite_database(uri)
        if not database or database == ":memory:":
            raise StoreNotFoundError(
                f"tracking store {uri!r} is an in-memory database: no runs outlive the process "
                "that logged them. Use a file, e.g. sqlite:///mlflow.db."
            )
        path = Path(database).absolute()
        if not path.is_file():
            raise StoreNotFoundError(
                f"tracking store {uri!r} does not exist (no file {path}). Pass the store that holds "
                "your runs: tracking_uri=... / --tracking-uri, or set MLFLOW_TRACKING_URI."
            )
        return _sqlite_store(path)
    if "://" in uri and not uri.startswith("file:"):
        raise StoreNotFoundError(
            f"tracking store {uri!r}: unsupported scheme; use sqlite:///..., file:///..., a path, "
            "or http(s)://host:port."
        )
    local = Path(_file_uri_path(uri)).expanduser()
    if local.is_file():
        return _sqlite_store(local)
    if local.is_dir():
        return Store("file", local.resolve().as_uri(), str(local.resolve()))
    raise StoreNotFoundError(
        f"tracking store {uri!r} does not exist (no file or directory {local}). Pass the store that "
        "holds your runs: tracking_uri=... / --tracking-uri, or set MLFLOW_TRACKING_URI."
    )
