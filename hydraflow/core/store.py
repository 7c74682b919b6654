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
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


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
        path = uri.removeprefix("sqlite:").removeprefix("//")
        if not Path(path).is_file():
            raise StoreNotFoundError(
                f"tracking store {uri!r} does not exist (no file {path}). Pass the store that holds "
                "your runs: tracking_uri=... / --tracking-uri, or set MLFLOW_TRACKING_URI."
            )
        return Store("sqlite", f"sqlite:///{Path(path).resolve()}", str(Path(path).resolve()))
    if "://" in uri and not uri.startswith("file:"):
        raise StoreNotFoundError(
            f"tracking store {uri!r}: unsupported scheme; use sqlite:///..., file:///..., a path, "
            "or http(s)://host:port."
        )
    local = Path(_file_uri_path(uri)).expanduser()
    if local.is_file():
        return Store("sqlite", f"sqlite:///{local.resolve()}", str(local.resolve()))
    if local.is_dir():
        return Store("file", local.resolve().as_uri(), str(local.resolve()))
    raise StoreNotFoundError(
        f"tracking store {uri!r} does not exist (no file or directory {local}). Pass the store that "
        "holds your runs: tracking_uri=... / --tracking-uri, or set MLFLOW_TRACKING_URI."
    )
