"""One loader per kind of store; each returns the same four long tables (:class:`StoreTables`)."""

from __future__ import annotations

from collections.abc import Sequence

from hydraflow.core.loaders.tables import Changes, StoreTables, Widen
from hydraflow.core.store import Store

__all__ = ["Changes", "StoreTables", "Widen", "load_tables"]


def load_tables(
    store: Store,
    experiments: Sequence[str] | None = None,
    run_ids: Sequence[str] | None = None,
    widen: Widen | None = None,
    since: tuple[int, ...] | None = None,
) -> StoreTables:
    """Read the active runs of ``experiments`` (all when ``None``), or exactly ``run_ids``.

    Raises:
        ExperimentNotFoundError: An experiment name the store does not have.
        RunNotFoundError: A run id the store does not have.

    ``widen`` (see :class:`StoreTables`) is run by loaders that can overlap it with their reads.
    ``since``: the store version (:func:`.sqlite_cache.store_version`) of a result the caller
    has; a loader that can tell what changed since returns only that (``StoreTables.changes``).
    """
    if store.kind == "sqlite":
        from hydraflow.core.loaders import sqlite

        return sqlite.load(store, experiments, run_ids, widen, since)
    if store.kind == "file":
        from hydraflow.core.loaders import filestore

        return filestore.load(store, experiments, run_ids)
    from hydraflow.core.loaders import rest

    return rest.load(store, experiments, run_ids)
