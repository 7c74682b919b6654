"""A warm worker's compose cache gives each job exactly the config Hydra composes for it (in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.hydraflow_plugins import _compose_cache
from hydra_plugins.hydraflow_plugins._compose_cache import ComposeCache


def _snapshot(config: Any) -> tuple[str, type | None, bool | None]:
    return (
        OmegaConf.to_yaml(config),
        OmegaConf.get_type(config, "hydra"),
        OmegaConf.is_struct(config),
    )


def test_each_job_gets_hydras_own_composition_also_after_a_config_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - db: mysql\n  - _self_\nlr: 0.1\n")
    (tmp_path / "db" / "mysql.yaml").write_text("port: 3306\n")
    (tmp_path / "db" / "postgres.yaml").write_text("port: 5432\n")
    cache = ComposeCache()
    # Hydra's loader as the launcher has it (not GlobalHydra's: the in-process suites need theirs)
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(tmp_path)))
    master = loader.load_configuration(
        "config", ["lr=0.5", "hydra.job.name=app"], run_mode=RunMode.MULTIRUN
    )

    def both(overrides: list[str]) -> Any:
        cached = cache.load_sweep_config(loader, master, overrides, "sweep")
        assert _snapshot(cached) == _snapshot(loader.load_sweep_config(master, overrides))
        return cached

    first = both(["+x=1", "lr=0.2"])
    second = both(["+x=2", "lr=0.3", "hydra.job.chdir=true"])
    assert cache.hits == 1  # the second job reused the first one's defaults and merge
    assert (first.x, first.lr, first.db.port) == (1, 0.2, 3306)
    assert (second.x, second.lr, second.db.port) == (2, 0.3, 3306)
    assert second.hydra.overrides.task == ["+x=2", "lr=0.3"]
    assert second.hydra.job.chdir and not first.hydra.job.chdir
    assert first.hydra.job.override_dirname == "+x=1,lr=0.2"
    assert both(["+x=3", "db=postgres"]).db.port == 5432  # another group choice: composed
    assert cache.hits == 1
    (tmp_path / "db" / "mysql.yaml").write_text("port: 33060\n")  # edited while it runs
    assert both(["+x=4"]).db.port == 33060
    assert cache.hits == 1
    assert both(["+x=5"]).db.port == 33060
    assert cache.hits == 2
    assert cache.load_sweep_config(loader, master, ["+x=6"], "another sweep").x == 6
    assert cache.hits == 2  # another sweep's jobs never reuse this one's
    # a merged config that pickle cannot copy (a structured config of __main__) is deep-copied
    monkeypatch.setattr(_compose_cache, "_pickled", lambda config: None)
    cache = ComposeCache()
    assert [both([f"+x={x}"]).x for x in (7, 8)] == [7, 8]
    assert cache.hits == 1
