"""Errors raised by the analysis side of hydraflow: one clear message naming what was asked."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HydraflowError(Exception):
    """Base class: the message says what was asked, what was found and what to do."""


class StoreNotFoundError(HydraflowError):
    """The tracking store (sqlite file, file-store directory) does not exist."""


class ExperimentNotFoundError(HydraflowError):
    """No experiment of that name in the store."""


class RunNotFoundError(HydraflowError):
    """No run with that id, or no run at that path."""


class UnknownKeyError(HydraflowError, KeyError):
    """A key (param, metric, tag, info field) that no run in the collection has."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class RunSelectionError(HydraflowError):
    """``one()`` / ``first()`` / ``best()`` found no run, or several where one was required."""


class ColumnTypeError(HydraflowError, TypeError):
    """An aggregation (mean, std, ...) asked of a column that is not numeric."""


class ConfigError(HydraflowError, ValueError):
    """A config file that cannot be read, composed or validated against its schema."""


class NoActiveRunError(HydraflowError, RuntimeError):
    """A tracking call made outside any MLflow run."""


def nearest(word: str, candidates: Iterable[str], limit: int = 5) -> list[str]:
    """The candidates closest to ``word`` (difflib), best first; substrings count as close too."""
    pool = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(word, pool, n=limit, cutoff=0.5)
    tail = word.rsplit(".", 1)[-1].lower()
    for cand in pool:
        if len(close) >= limit:
            break
        if cand not in close and tail and tail in cand.lower():
            close.append(cand)
    return close


def suggestion(word: str, candidates: Iterable[str], what: str = "keys") -> str:
    """`` Nearest keys: a, b.`` or a list of what exists when nothing is close."""
    pool = list(dict.fromkeys(candidates))
    close = nearest(word, pool)
    if close:
        return f" Nearest {what}: {', '.join(close)}."
    if not pool:
        return f" There are no {what}."
    shown = ", ".join(pool[:12]) + (", ..." if len(pool) > 12 else "")
    return f" Known {what}: {shown}."
