"""``hydra/sweeper/sampler=NAME`` beside hydra-optuna-sweeper, which registers the same names.

Which registration Hydra's plugin scan keeps depends on ``sys.path``; ours are stored again once the
scan is over. The tests make theirs the last one registered, start Hydra in this process (compose
API, no sweep) and check that ``flow_optuna`` gets our keys and the same sampler with no warning,
and that ``hydra/sweeper=optuna`` still composes and makes its sampler.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from hydra import compose, initialize
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from hydra_plugins.hydraflow_plugins import config as ours
from hydra_plugins.hydraflow_plugins._optuna_options import SweeperOptions, sampler_fields

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsgaii", "motpe")

# Hydra started in this process (initialize/compose) leaves its singletons changed: Hydra's own
# launcher suites that run later in the session then ran their jobs without the job log file
pytestmark = pytest.mark.usefixtures("hydra_restore_singletons")


@pytest.fixture
def theirs() -> Iterator[Any]:
    """hydra-optuna-sweeper's config module, registered last; the registrations are put back."""
    try:
        module = importlib.import_module("hydra_plugins.hydra_optuna_sweeper.config")
    except ImportError:
        message = (
            "hydra-optuna-sweeper is not installed: README's test command installs it "
            "(pip install --no-deps 'hydra-optuna-sweeper>=1.2,<1.3')"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    Plugins.instance()  # Hydra's plugin scan (once per process) is over
    repo = ConfigStore.instance().repo["hydra"]["sweeper"]
    saved = copy.deepcopy(repo["sampler"])
    importlib.reload(module)  # as when the scan meets hydra-optuna-sweeper last
    yield module
    repo["sampler"] = saved


def _arguments(node: Any, overrides: list[str]) -> tuple[str, dict[str, Any]]:
    """flow_optuna's sampler from ``node``: made with warnings as errors; its class and every
    argument it got (defaults filled in)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        made = SweeperOptions.from_params({"sampler": node}, overrides).sampler
    container = OmegaConf.to_container(node)
    assert isinstance(container, dict)
    fields = sampler_fields({str(k): v for k, v in container.items()}, overrides)
    cls = get_class(fields.pop("_target_"))
    fields.pop("_partial_", None)
    assert type(made) is cls or getattr(made, "func", None) is cls
    bound = inspect.signature(cls).bind_partial(**fields)
    bound.apply_defaults()
    return cls.__name__, dict(bound.arguments)


def test_hydra_keeps_our_sampler_configs_for_both_sweepers(theirs: Any) -> None:
    with initialize(version_base="1.3", config_path=None):
        for name in SAMPLERS:
            cfg = compose(
                overrides=[
                    "hydra/sweeper=flow_optuna",
                    f"hydra/sweeper/sampler={name}",
                    "hydra.sweeper.sampler.seed=3",  # hydra-optuna-sweeper's grid has no seed
                ],
                return_hydra_config=True,
            )
            node = cfg.hydra.sweeper.sampler
            assert node._target_.startswith("optuna.samplers.")
            assert _arguments(node, list(cfg.hydra.overrides.hydra))[1]["seed"] == 3
        for name, cls in (("tpe", "TPESampler"), ("motpe", "TPESampler"), ("grid", "GridSampler")):
            cfg = compose(
                overrides=["hydra/sweeper=optuna", f"hydra/sweeper/sampler={name}"],
                return_hydra_config=True,
            )
            assert cfg.hydra.sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
            made = instantiate(cfg.hydra.sweeper.sampler)
            assert cls in (
                type(made).__name__,
                getattr(getattr(made, "func", None), "__name__", ""),
            )


@pytest.mark.parametrize(
    ("their_conf", "our_conf"),
    [
        ("TPESamplerConfig", "TPESamplerConf"),
        ("MOTPESamplerConfig", "MOTPESamplerConf"),
        ("RandomSamplerConfig", "RandomSamplerConf"),
        ("GridSamplerConfig", "GridSamplerConf"),
        ("CmaEsSamplerConfig", "CmaEsSamplerConf"),
        ("NSGAIISamplerConfig", "NSGAIISamplerConf"),
    ],
)
def test_a_hydra_optuna_sweeper_sampler_config_makes_our_sampler(
    theirs: Any, their_conf: str, our_conf: str
) -> None:
    their_node = OmegaConf.structured(getattr(theirs, their_conf))
    our_node = OmegaConf.structured(getattr(ours, our_conf))
    assert _arguments(their_node, []) == _arguments(our_node, [])


def test_a_sampler_key_the_command_line_sets_is_passed_even_at_their_default(theirs: Any) -> None:
    node = OmegaConf.structured(theirs.TPESamplerConfig)
    chosen = ["hydra.sweeper.sampler.multivariate=false"]
    assert _arguments(node, [])[1]["multivariate"] is None  # Optuna 5 decides
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna may call the key deprecated: the user chose it
        made = SweeperOptions.from_params({"sampler": node}, chosen).sampler
    assert isinstance(made, optuna.samplers.TPESampler)
    assert made._multivariate is False
