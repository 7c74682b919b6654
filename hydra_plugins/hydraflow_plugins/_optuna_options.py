"""The ``flow_optuna`` sweeper's settings, checked once, with one clear message per bad value."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["FlowOptunaError", "SweeperOptions"]

DIRECTIONS = ("minimize", "maximize")

# hydra-optuna-sweeper 1.2's sampler configs (a config file written for it, or its registration of
# the ``hydra/sweeper/sampler`` names, which ``config.SamplerConfigsAfterScan`` replaces) hold
# Optuna 2's defaults, which Optuna 4/5 deprecate (a FutureWarning each) or changed
# (``multivariate``): a key at that default which the command line did not set is left out, so the
# sampler is the one flow_optuna's own node makes. Its ``MOTPESampler`` (gone in Optuna 4) is TPE.
THEIR_DEFAULTS: dict[str, dict[str, Any]] = {
    "optuna.samplers.TPESampler": {
        "consider_prior": True,
        "prior_weight": 1.0,
        "consider_magic_clip": True,
        "consider_endpoints": False,
        "multivariate": False,
        "warn_independent_sampling": True,
    },
    "optuna.samplers.CmaEsSampler": {"inc_popsize": 2},
}
THEIR_DEFAULTS["optuna.samplers.MOTPESampler"] = {
    **THEIR_DEFAULTS["optuna.samplers.TPESampler"],
    "n_ehvi_candidates": 24,
}
RENAMED = {
    "optuna.samplers.MOTPESampler": (
        "optuna.samplers.TPESampler",
        {"n_ehvi_candidates": "n_ei_candidates"},
    )
}


class FlowOptunaError(CompactHydraException):
    """A sweeper problem the user fixes by changing input; Hydra prints only the message."""


def _bad(name: str, value: Any, what: str, example: str) -> FlowOptunaError:
    return FlowOptunaError(
        f"hydra.sweeper.{name}={value!r} is invalid: {what}. Set e.g. hydra.sweeper.{name}={example}"
    )


def _count(name: str, value: Any, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _bad(name, value, "it must be a whole number greater than 0", example)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _directions(key: str, direction: Any) -> list[str]:
    value = _plain(direction) if direction is not None else "minimize"
    names = list(value) if isinstance(value, (list, tuple)) else [value]
    texts = [getattr(d, "name", d) for d in names]  # hydra-optuna-sweeper's Direction enum
    if not texts or any(t not in DIRECTIONS for t in texts):
        raise _bad(
            key,
            value,
            "each direction must be 'minimize' or 'maximize'",
            "minimize (or [minimize,maximize] for two objectives)",
        )
    return [str(t) for t in texts]


def sampler_fields(node: Mapping[str, Any], chosen: Collection[str] = ()) -> dict[str, Any]:
    """The ``sampler`` node's fields to instantiate: nulls left out (Optuna's default), and
    hydra-optuna-sweeper's Optuna 2 defaults (``THEIR_DEFAULTS``) unless ``chosen`` (the keys set
    on the command line) names them; its ``MOTPESampler`` becomes Optuna's TPE."""
    target = str(node.get("_target_"))
    theirs = THEIR_DEFAULTS.get(target, {})
    fields = {
        k: v
        for k, v in node.items()
        if v is not None and (k in chosen or k not in theirs or theirs[k] != v)
    }
    if target in RENAMED:
        fields["_target_"], renamed = RENAMED[target]
        fields = {renamed.get(k, k): v for k, v in fields.items()}
    return fields


def _instantiate(name: str, node: Any, example: str, chosen: Collection[str] = ()) -> Any:
    """Instantiate the ``sampler`` / ``pruner`` node; a bad one names the key and the target."""
    from hydra.utils import instantiate

    value = _plain(node)
    if not isinstance(value, Mapping) or "_target_" not in value:
        raise _bad(name, value, "it must be a config with a _target_", example)
    value = sampler_fields(value, chosen) if name == "sampler" else value
    value = {k: v for k, v in value.items() if v is not None}  # null: Optuna's default
    try:
        return instantiate(value)
    except Exception as error:
        cause = error.__cause__ or error
        why = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
        if isinstance(cause, ImportError):  # Hydra's first line names nothing more
            why = f"{value['_target_']!r} cannot be imported"
        raise FlowOptunaError(
            f"hydra.sweeper.{name} ({value['_target_']}) cannot be created: {why}. "
            f"Choose one with e.g. hydra/sweeper/{name}={example}"
        ) from None


# Packages Optuna's samplers import only when they first sample (mid-sweep, after jobs ran).
SAMPLER_NEEDS = {
    "CmaEsSampler": ("cmaes",),
    "GPSampler": ("torch", "scipy"),
    "QMCSampler": ("scipy",),
}


def _check_needs(sampler: Any) -> None:
    """A sampler whose packages are missing is one error now, not a traceback mid-sweep."""
    import importlib.util

    name = getattr(getattr(sampler, "func", sampler), "__name__", type(sampler).__name__)
    missing = [p for p in SAMPLER_NEEDS.get(name, ()) if importlib.util.find_spec(p) is None]
    if missing:
        raise FlowOptunaError(
            f"hydra.sweeper.sampler ({name}) needs the Python package(s) {', '.join(missing)}, "
            f"which are not installed: pip install {' '.join(missing)} (or choose another "
            "hydra/sweeper/sampler, e.g. tpe)"
        )


def _chosen(overrides: Collection[str]) -> set[str]:
    """The sampler keys the command line sets (``hydra.sweeper.sampler.KEY=...``)."""
    prefix = "hydra.sweeper.sampler."
    keys = (o.split("=", 1)[0].lstrip("+~") for o in overrides)
    return {k.removeprefix(prefix) for k in keys if k.startswith(prefix)}


@dataclass(frozen=True)
class SweeperOptions:
    """The checked settings of ``hydra/sweeper=flow_optuna`` (see ``FlowOptunaSweeperConf``)."""

    sampler: Any  # an Optuna sampler, or a partial of GridSampler awaiting its search space
    directions: list[str]
    storage: str | None
    study_name: str | None
    n_trials: int
    n_jobs: int
    params: dict[str, str]
    custom_search_space: str | None
    prune_on: str | None
    pruner: Any  # an Optuna pruner, or None (no pruning)

    @property
    def is_grid(self) -> bool:
        """Whether the sampler is a GridSampler still waiting for its search space."""
        from optuna.samplers import GridSampler

        return isinstance(self.sampler, functools.partial) and self.sampler.func is GridSampler

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], overrides: Collection[str] = ()
    ) -> SweeperOptions:
        """Check every field; raise :class:`FlowOptunaError` naming the first bad one.

        ``overrides``: the command line's Hydra overrides (``hydra.overrides.hydra``), which say
        which sampler keys the user chose."""
        prune_on = params.get("prune_on")
        if prune_on is not None and (not isinstance(prune_on, str) or not prune_on.strip()):
            raise _bad("prune_on", prune_on, "it must be a metric name", "val_loss")
        if params.get("search_space") is not None:
            raise FlowOptunaError(
                "hydra.sweeper.search_space (deprecated by hydra-optuna-sweeper) is not read by "
                "flow_optuna: write each parameter in hydra.sweeper.params in Hydra's sweep grammar, "
                "e.g. hydra.sweeper.params.x='interval(0,1)'"
            )
        key = "directions" if params.get("directions") is not None else "direction"
        directions = _directions(key, params.get(key))
        if prune_on and len(directions) > 1:
            raise FlowOptunaError(
                f"hydra.sweeper.prune_on={prune_on!r} is invalid with several directions "
                f"({directions}): Optuna prunes single-objective studies only. "
                "Set hydra.sweeper.prune_on=null"
            )
        pruner_node = params.get("pruner")
        pruner = None
        if pruner_node is not None and not prune_on:
            raise FlowOptunaError(
                "hydra.sweeper.pruner is set but hydra.sweeper.prune_on is null: nothing would be "
                "pruned. Name the intermediate metric the jobs log, e.g. hydra.sweeper.prune_on=val_loss"
            )
        if pruner_node is not None:
            pruner = _instantiate("pruner", pruner_node, "median")
        elif prune_on:
            from optuna.pruners import MedianPruner

            pruner = MedianPruner()
        raw_params = _plain(params.get("params")) or {}
        if not isinstance(raw_params, Mapping):
            raise _bad(
                "params", raw_params, "it must map config keys to sweeps", "{x: interval(0,1)}"
            )
        sampler = _instantiate("sampler", params.get("sampler"), "tpe", _chosen(overrides))
        _check_needs(sampler)
        return cls(
            sampler=sampler,
            directions=directions,
            storage=_plain(params.get("storage")),
            study_name=_plain(params.get("study_name")),
            n_trials=_count("n_trials", params.get("n_trials", 20), "20"),
            n_jobs=_count("n_jobs", params.get("n_jobs", 2), "4"),
            params={str(k): str(v) for k, v in raw_params.items()},
            custom_search_space=params.get("custom_search_space"),
            prune_on=prune_on,
            pruner=pruner,
        )
