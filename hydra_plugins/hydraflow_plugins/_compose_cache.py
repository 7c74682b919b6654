"""A warm worker's memory of what Hydra's config composition does alike for every job of a sweep.

Hydra composes each job's config from nothing (``ConfigLoader.load_sweep_config``): it builds the
defaults list from the primary config and the overrides that choose or drop config groups, loads and
merges every config of that list, and only then applies the job's value overrides (``+x=1.5``)
and fills in ``hydra.runtime``, ``hydra.overrides`` and the like. Jobs of one sweep mostly differ in
value overrides only, so the first two steps, most of the time (about 25 of 38 ms a job on the quiet
machine), give the same result for each of them.

:class:`ComposeCache` keeps that result per worker and lets Hydra's own composition do everything
else, so a job gets the config Hydra composes for it:

- the key: the sweep (the digest of its common spec parts: Hydra's context, ConfigStore and
  launch config), the config name, the config sources (``hydra.searchpath`` adds some), the
  overrides that are not value overrides (classified as Hydra's ``Overrides`` does: a group that
  exists, with a string or list value), and the defaults list's flags;
- the cached defaults list is handed back with this job's own value overrides; the merged config
  is kept pickled and each job gets its own copy (Hydra goes on to change it; unpickling copies
  it in a quarter of ``copy.deepcopy``'s time; a config pickle cannot copy, e.g. a structured
  config of the user's ``__main__``, is deep-copied);
- a config file the cached composition read that has changed since (its modification time or
  size), or is gone, makes it compose anew, as Hydra would read the file again.

Hydra's ``create_defaults_list`` is replaced only while the job's composition runs, and only for
its thread: a composition of another thread meanwhile (one a job left running) is Hydra's own.
Where Hydra's internals are not as expected (another Hydra version), it composes as Hydra does.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

__all__ = ["ComposeCache"]

_FILE_SCHEME = "file://"


@dataclass
class _Entry:
    """One cached composition: Hydra's defaults list, the merged config, the files it read."""

    defaults: Any  # hydra._internal.defaults_list.DefaultsList
    config: Any  # the merged config, before value overrides (each job gets a copy)
    pickled: bytes | None  # the same, pickled, when pickle gives it back (the quicker copy)
    files: dict[str, tuple[int, int] | None]  # path → (mtime_ns, size), None: did not exist

    def config_copy(self) -> Any:
        if self.pickled is not None:
            return pickle.loads(self.pickled)
        return copy.deepcopy(self.config)

    def fresh(self) -> bool:
        return all(_stamp(path) == stamp for path, stamp in self.files.items())


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _files_read(repo: Any) -> dict[str, tuple[int, int] | None] | None:
    """The files (with their stamps) of every config the caching repository loaded; ``None`` when
    it cannot tell (then nothing is cached)."""
    from hydra.plugins.config_source import ConfigSource

    cache = getattr(repo, "cache", None)
    if not isinstance(cache, dict):
        return None
    files: dict[str, tuple[int, int] | None] = {}
    for key, result in cache.items():
        if result is None or not str(result.path).startswith(_FILE_SCHEME):
            continue  # not found, or packaged / structured: does not change while a worker runs
        if not key.startswith("config_path="):
            return None
        name = ConfigSource._normalize_file_name(key[len("config_path=") :])
        path = os.path.realpath(os.path.join(result.path[len(_FILE_SCHEME) :], name))
        files[path] = _stamp(path)
    return files


def _pickled(config: Any) -> bytes | None:
    """``config`` pickled, if pickle gives it back (else ``None``)."""
    try:
        pickled = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(pickled)
    except Exception:
        return None
    return pickled


def _is_value_override(override: Any, repo: Any) -> bool:
    """Whether Hydra's ``Overrides`` takes ``override`` as a config (value) override."""
    return isinstance(override.value(), dict) or not repo.group_exists(override.key_or_group)


class ComposeCache:
    """Per worker: the defaults list and merged config of each composition seen (see the module)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self.hits = 0  # how many compositions reused an entry (for tests and profiling)

    def load_sweep_config(
        self, config_loader: Any, master_config: Any, overrides: Sequence[str], sweep: str
    ) -> Any:
        """``config_loader.load_sweep_config(master_config, overrides)``, reusing what an earlier
        job of the same ``sweep`` (a digest of its common spec parts) composed alike."""
        module: Any = sys.modules.get(type(config_loader).__module__)
        original_create = getattr(module, "create_defaults_list", None)
        original_compose = getattr(config_loader, "_compose_config_from_defaults_list", None)
        if module is None or original_create is None or original_compose is None:
            return config_loader.load_sweep_config(master_config, list(overrides))
        call = _Call(self, sweep, original_create, original_compose)
        module.create_defaults_list = call.create_defaults_list
        config_loader._compose_config_from_defaults_list = call.compose
        try:
            return config_loader.load_sweep_config(master_config, list(overrides))
        finally:
            module.create_defaults_list = original_create
            del config_loader._compose_config_from_defaults_list


class _Call:
    """One composition: stands in for Hydra's ``create_defaults_list`` and the loader's
    ``_compose_config_from_defaults_list`` while it runs."""

    def __init__(
        self,
        cache: ComposeCache,
        sweep: str,
        create: Callable[..., Any],
        compose: Callable[..., Any],
    ) -> None:
        self.cache, self.sweep = cache, sweep
        self._create, self._compose = create, compose
        self.hit: _Entry | None = None
        self.key: tuple[Any, ...] | None = None
        self.defaults: Any = None
        self._thread = threading.get_ident()  # another thread's composition is not this one
        self._calls = 0

    def create_defaults_list(
        self,
        repo: Any,
        config_name: str | None,
        overrides_list: list[Any],
        prepend_hydra: bool,
        skip_missing: bool,
    ) -> Any:
        hydras = partial(
            self._create,
            repo=repo,
            config_name=config_name,
            overrides_list=overrides_list,
            prepend_hydra=prepend_hydra,
            skip_missing=skip_missing,
        )
        if threading.get_ident() != self._thread:
            return hydras()
        self._calls += 1
        if self._calls > 1:  # not the one composition expected: Hydra's own, nothing cached
            self.hit = self.key = None
            return hydras()
        is_value = [
            not o.is_sweep_override() and _is_value_override(o, repo) for o in overrides_list
        ]
        values = [o for o, value in zip(overrides_list, is_value, strict=True) if value]
        choices = tuple(
            o.input_line for o, value in zip(overrides_list, is_value, strict=True) if not value
        )
        sources = tuple((s.provider, s.full_path()) for s in repo.get_sources())
        key = (self.sweep, config_name, sources, choices, prepend_hydra, skip_missing)
        entry = self.cache._entries.get(key)
        if entry is not None and entry.fresh():
            self.hit = entry
            self.cache.hits += 1
            return replace(entry.defaults, config_overrides=values)
        self.key = key
        self.defaults = hydras()
        return self.defaults

    def compose(self, defaults: Any, repo: Any) -> Any:
        if self.hit is not None:
            return self.hit.config_copy()
        config = self._compose(defaults=defaults, repo=repo)
        files = _files_read(repo)
        if self.key is not None and files is not None:
            kept = copy.deepcopy(config)
            self.cache._entries[self.key] = _Entry(self.defaults, kept, _pickled(kept), files)
        return config
