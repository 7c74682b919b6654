"""Config dataclasses and ConfigStore entries of the ``flow`` launcher, sweeper and MLflow callback.

Registered groups:

- ``hydra/launcher=flow`` and ``hydra/launcher/instance=<name>`` (one option per catalog instance type);
- ``flow/instance=<name>`` — a job's own instance type (``+flow/instance=a100,h100`` sweeps it);
- ``hydra/sweeper=flow`` — the basic sweeper plus resume;
- ``hydra/sweeper=flow_optuna`` — Optuna without a batch barrier, with pruning and resume, its
  ``hydra/sweeper/sampler=<name>`` (the names and keys of hydra-optuna-sweeper's, which pins Optuna 2)
  and ``hydra/sweeper/pruner=<name>``;
- ``hydra/callbacks=mlflow`` — :class:`hydraflow.callbacks.MLflowCallback`.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin

from hydra_plugins.hydraflow_plugins._paths import SpecLoading

LAUNCHER_TARGET = "hydra_plugins.hydraflow_plugins.flow_launcher.FlowLauncher"
SWEEPER_TARGET = "hydra_plugins.hydraflow_plugins.flow_sweeper.FlowSweeper"
OPTUNA_SWEEPER_TARGET = "hydra_plugins.hydraflow_plugins.flow_optuna_sweeper.FlowOptunaSweeper"
CALLBACK_TARGET = "hydraflow.callbacks.MLflowCallback"


@dataclass
class LauncherFields:
    """The user-facing fields of ``hydra.launcher`` (shared by the config node and its validation)."""

    provider: str | None = None
    instance: str | None = None
    max_price_per_hour: float | None = None
    max_run_time_hours: float | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[Any] = field(default_factory=list)
    num_instances: int = 1
    max_parallel: int | None = None
    poll_interval: float | None = None
    max_retries: int = 0
    dry_run: bool = False
    max_total_cost: float | None = None
    python: str | None = None
    reuse_workers: bool = True
    # the remote job environment (see _remote_env): null = prepare it unless `python` is given
    env_setup: bool | None = None
    setup: Any = field(default_factory=list)  # shell commands (one string: one command)
    requirements: str | None = None
    env_dir: str = "~/.cache/hydraflow/envs"


@dataclass
class FlowLauncherConf(LauncherFields):
    """``hydra/launcher=flow``: every job of a sweep becomes one Flow task.

    Fields left ``None`` fall back to the Flow settings (``provider``) or to a per-provider default
    (``max_parallel``, ``poll_interval``); see the README section "launcher".
    """

    _target_: str = LAUNCHER_TARGET
    # `instance: null` in the defaults list lets `hydra/launcher/instance=NAME` (no `+`) select one;
    # `_self_` first so that the selected option's value wins over the inherited `instance` field.
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"instance": None}])


@dataclass
class FlowSweeperConf:
    """``hydra/sweeper=flow``: the basic sweeper's grammar and batching, plus resume from MLflow."""

    _target_: str = SWEEPER_TARGET
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    rerun_finished: bool = False


@dataclass
class FlowOptunaSweeperConf:
    """``hydra/sweeper=flow_optuna``: hydra-optuna-sweeper's keys, no batch barrier, pruning, resume.

    ``sampler`` and ``pruner`` are instantiated by the sweeper (``_recursive_: false``) so that a bad
    one gets a message naming the key. ``storage: null`` keeps the study in a journal beside the
    MLflow store; ``study_name: null`` starts a new study named after the job and the sweep.
    """

    _target_: str = OPTUNA_SWEEPER_TARGET
    _recursive_: bool = False
    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": None}]
    )
    sampler: Any = None
    direction: Any = "minimize"
    directions: list[str] | None = None  # wins over ``direction`` when set (multi-objective)
    storage: str | None = None
    study_name: str | None = None
    n_trials: int = 20
    n_jobs: int = 2
    params: dict[str, str] | None = None
    custom_search_space: str | None = None
    prune_on: str | None = None
    pruner: Any = None
    search_space: Any = (
        None  # hydra-optuna-sweeper's deprecated key: refused with a pointer to params
    )


# The samplers of hydra/sweeper=flow_optuna: hydra-optuna-sweeper's option names and keys (so its
# commands work unchanged; when both are installed either registration of a name works for both
# sweepers). A key left null is not passed by flow_optuna: Optuna's default applies (the keys null
# here are those newer Optuna releases deprecate).
@dataclass
class TPESamplerConf:
    """``hydra/sweeper/sampler=tpe`` (the default)."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = None
    warn_independent_sampling: bool | None = None
    constant_liar: bool | None = None


@dataclass
class MOTPESamplerConf(TPESamplerConf):
    """``hydra/sweeper/sampler=motpe``: Optuna's TPE, which handles several objectives itself
    (``MOTPESampler`` was removed in Optuna 4)."""


@dataclass
class RandomSamplerConf:
    """``hydra/sweeper/sampler=random``."""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConf:
    """``hydra/sweeper/sampler=grid``: the sweeper gives it the grid of ``params``."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class CmaEsSamplerConf:
    """``hydra/sweeper/sampler=cmaes``."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    inc_popsize: int | None = None
    use_separable_cma: bool = False
    independent_sampler: Any = None
    source_trials: Any = None


@dataclass
class NSGAIISamplerConf:
    """``hydra/sweeper/sampler=nsgaii``."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None


@dataclass
class MedianPrunerConf:
    """``hydra/sweeper/pruner=median``."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    """``hydra/sweeper/pruner=successive_halving``."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class HyperbandPrunerConf:
    """``hydra/sweeper/pruner=hyperband``."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class PercentilePrunerConf:
    """``hydra/sweeper/pruner=percentile``."""

    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0


@dataclass
class MLflowCallbackConf:
    """One entry of ``hydra.callbacks``: log the sweep and each job to MLflow."""

    _target_: str = CALLBACK_TARGET
    experiment: str | None = None
    tracking_uri: str | None = None


def _instance_names() -> list[str]:
    """Every name the catalog accepts: short aliases (``a100``, ``4xa100``) and full specs."""
    if SpecLoading.active:
        # In a job's task, Hydra's ConfigStore (with these options) comes from the launcher's
        # pickled state; importing the catalog would only slow every job down.
        return []
    from flow_backend.instance_types import instance_type_names

    return instance_type_names()


def register_samplers() -> None:
    """Store the ``hydra/sweeper/sampler`` options (hydra-optuna-sweeper registers the same names)."""
    store = ConfigStore.instance()
    for name, sampler in (
        ("tpe", TPESamplerConf),
        ("motpe", MOTPESamplerConf),
        ("random", RandomSamplerConf),
        ("grid", GridSamplerConf),
        ("cmaes", CmaEsSamplerConf),
        ("nsgaii", NSGAIISamplerConf),
    ):
        store.store(group="hydra/sweeper/sampler", name=name, node=sampler, provider="hydraflow")


class SamplerConfigsAfterScan(SearchPathPlugin):
    """Stores the sampler options again once Hydra's plugin scan is over, before it composes.

    hydra-optuna-sweeper stores the same ``hydra/sweeper/sampler`` names; which one Hydra kept would
    depend on the order its scan meets the two plugins (``sys.path``). Theirs lack keys of ours
    (``grid`` has no ``seed``, ``cmaes`` no ``n_startup_trials``, ``tpe`` no ``constant_liar``) and
    pass Optuna 2's defaults, which Optuna 4/5 deprecate; ours hold their keys too (null: Optuna's
    default; but ``motpe``'s ``n_ehvi_candidates``: our ``motpe`` is Optuna's TPE), so
    ``hydra/sweeper=optuna`` composes and runs with them as well.
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        register_samplers()


def register_configs() -> None:
    """Store every node of this plugin in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(group="hydra/launcher", name="flow", node=FlowLauncherConf, provider="hydraflow")
    store.store(group="hydra/sweeper", name="flow", node=FlowSweeperConf, provider="hydraflow")
    store.store(
        group="hydra/sweeper", name="flow_optuna", node=FlowOptunaSweeperConf, provider="hydraflow"
    )
    register_samplers()
    for name, pruner in (
        ("median", MedianPrunerConf),
        ("successive_halving", SuccessiveHalvingPrunerConf),
        ("hyperband", HyperbandPrunerConf),
        ("percentile", PercentilePrunerConf),
    ):
        store.store(group="hydra/sweeper/pruner", name=name, node=pruner, provider="hydraflow")
    store.store(
        group="hydra/callbacks",
        name="mlflow",
        node={"mlflow": MLflowCallbackConf},
        package="hydra.callbacks",
        provider="hydraflow",
    )
    for name in _instance_names():
        store.store(
            group="hydra/launcher/instance",
            name=name,
            node={"instance": name},
            package="hydra.launcher",
            provider="hydraflow",
        )
        store.store(
            group="flow/instance",
            name=name,
            node={"instance": name},
            package="flow",
            provider="hydraflow",
        )


register_configs()
