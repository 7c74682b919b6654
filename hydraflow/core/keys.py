"""How users name columns: bare keys are params; ``params.``/``metrics.``/``tags.``/``info.`` are explicit.

``"model.type"`` → ``params.model.type``; ``"metrics.loss"`` → itself; ``"info.status"`` → ``status``.
A bare key that is no param but is a run attribute (``run_id``, ``status``, ``start_time``...) means that
attribute. A key no run has raises :class:`UnknownKeyError` naming the nearest keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydraflow.core.errors import UnknownKeyError, suggestion
from hydraflow.core.frame import INFO_COLUMNS

PREFIXES = ("params.", "metrics.", "tags.")
_INFO_ALIASES = {"experiment_name": "experiment", "id": "run_id", "name": "run_name"}


def normalize(key: str) -> str:
    """Keyword-argument spelling to key spelling: ``model__type`` → ``model.type``."""
    return key.replace("__", ".")


def display_keys(columns: Sequence[str]) -> list[str]:
    """Every key a user can write for these columns, params bare, the rest with their prefix."""
    shown = []
    for column in columns:
        if column.startswith("params."):
            shown.append(column.removeprefix("params."))
        elif column in INFO_COLUMNS:
            shown.append(f"info.{column}")
        else:
            shown.append(column)
    return shown


def resolve(key: str, columns: Sequence[str]) -> str:
    """The frame column a user key names.

    Raises:
        UnknownKeyError: No run has that key; the message lists the nearest keys.
    """
    if not isinstance(key, str):
        raise UnknownKeyError(f"key {key!r} must be a string such as 'lr' or 'metrics.loss'.")
    present = set(columns)
    if key.startswith(PREFIXES):
        if key in present:
            return key
    elif key.startswith("info."):
        name = key.removeprefix("info.")
        name = _INFO_ALIASES.get(name, name)
        if name in INFO_COLUMNS and name in present:
            return name
    else:
        if f"params.{key}" in present:
            return f"params.{key}"
        name = _INFO_ALIASES.get(key, key)
        if name in INFO_COLUMNS and name in present:
            return name
    raise UnknownKeyError(
        f"no run has the key {key!r} (bare keys are params; use the prefixes metrics., tags., "
        "info. for the rest)." + suggestion(key, display_keys(columns))
    )


def missing_column(error: Exception, columns: Sequence[str]) -> UnknownKeyError:
    """A clear error for a polars expression naming a column the frame lacks."""
    found = re.search(r'column "(.+?)"', str(error))
    name = found.group(1) if found else str(error).splitlines()[0]
    return UnknownKeyError(
        f"a polars expression names the column {name!r}, which no run has (frame columns carry "
        "their prefix: pl.col('params.lr'), pl.col('metrics.loss'))."
        + suggestion(name, list(columns), "columns")
    )
