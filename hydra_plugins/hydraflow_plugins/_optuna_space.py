"""The search space of ``flow_optuna``: ``hydra.sweeper.params`` in Hydra's sweep grammar.

``choice(a, b)`` → categorical; ``range(start, stop[, step])`` → the integers (or floats) Hydra's
range yields, as a stepped distribution (``shuffle(range(...))`` → categorical);
``interval(low, high)`` → uniform; ``tag(log, interval(low, high))`` → log-uniform;
``tag(log, range(low, stop))`` → log-uniform integers (step 1); a plain value is fixed for every
trial. A bad expression gets one message naming ``hydra.sweeper.params.<key>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from hydra_plugins.hydraflow_plugins._optuna_options import FlowOptunaError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import Trial

__all__ = ["SearchSpace"]

GRAMMAR = "choice(a,b), range(1,10), interval(0,1) or tag(log,interval(1e-4,1))"


def _bad_param(key: str, expression: str, what: str) -> FlowOptunaError:
    return FlowOptunaError(
        f"hydra.sweeper.params.{key}={expression!r} is invalid: {what}. "
        f"Use Hydra's sweep grammar, e.g. {GRAMMAR}"
    )


def _distribution(override: Override, key: str, expression: str) -> BaseDistribution | str:
    """The Optuna distribution of one sweep override, or the fixed value's override text."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, IntervalSweep):
        low, high = float(value.start or 0), float(value.end or 0)
        if not low < high:
            raise _bad_param(key, expression, "an interval needs low < high")
        if "log" in value.tags:
            if low <= 0:
                raise _bad_param(key, expression, "a log interval needs low > 0")
            return FloatDistribution(low, high, log=True)
        return FloatDistribution(low, high)
    values: list[Any] = list(override.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise _bad_param(key, expression, "it yields no value")
    if isinstance(value, RangeSweep) and not value.shuffle and len(values) > 1:
        step = abs(float(value.step or 1))
        numbers = [float(v) for v in values]
        integers = all(isinstance(v, int) for v in values)
        if "log" in value.tags:
            if not integers or step != 1 or min(numbers) < 1:
                raise _bad_param(
                    key,
                    expression,
                    "a log range needs whole numbers from 1 up with step 1 "
                    "(or use tag(log, interval(low, high)) for real numbers)",
                )
            return IntDistribution(int(min(numbers)), int(max(numbers)), log=True)
        if integers:
            return IntDistribution(int(min(numbers)), int(max(numbers)), step=int(step))
        return FloatDistribution(min(numbers), max(numbers), step=step)
    for choice in values:
        if not isinstance(choice, (str, int, float, bool, type(None))):
            raise _bad_param(key, expression, f"the choice {choice!r} is not a plain value")
    return CategoricalDistribution(values)


def _grid_values(key: str, distribution: BaseDistribution) -> list[Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        n = round((distribution.high - distribution.low) / distribution.step)
        return [distribution.low + i * distribution.step for i in range(n + 1)]
    raise FlowOptunaError(
        f"hydra.sweeper.params.{key} is continuous, but the grid sampler needs a finite set of "
        f"values. Use choice(...) or range(...) for {key}, or another hydra/sweeper/sampler"
    )


@dataclass
class SearchSpace:
    """The distributions Optuna samples and the values every trial shares."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    extend: Callable[[DictConfig, Trial], None] | None = None

    @classmethod
    def parse(
        cls,
        params: Mapping[str, str],
        arguments: Sequence[str],
        custom_search_space: str | None = None,
    ) -> SearchSpace:
        """Parse ``hydra.sweeper.params`` and the command line's overrides (which win)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import OverrideParseException
        from optuna.distributions import BaseDistribution

        parser = OverridesParser.create()
        space = cls()
        entries = [(f"{k}={v}", k, v, True) for k, v in params.items()]
        entries += [(a, a.split("=", 1)[0], a.partition("=")[2], False) for a in arguments]
        for text, key, expression, from_params in entries:
            try:
                (override,) = parser.parse_overrides([text])
                parsed = _distribution(override, key, expression)
            except OverrideParseException as error:
                where = f"hydra.sweeper.params.{key}" if from_params else "the command line"
                raise FlowOptunaError(
                    f"{where}: {text!r} is not valid sweep grammar ({str(error).splitlines()[0]}). "
                    f"Use e.g. {GRAMMAR}"
                ) from None
            name = override.get_key_element()
            space.distributions.pop(name, None)
            space.fixed.pop(name, None)
            if isinstance(parsed, BaseDistribution):
                space.distributions[name] = parsed
            else:
                space.fixed[name] = parsed
        if custom_search_space:
            space.extend = _custom(custom_search_space)
        return space

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (every distribution must be discrete)."""
        return {key: _grid_values(key, d) for key, d in self.distributions.items()}

    def ask(self, study: Study, config: DictConfig) -> tuple[Trial, list[str]]:
        """Ask the study for a trial with this space's params; return it and the job's overrides."""
        trial = study.ask(self.distributions)
        if self.extend is not None:
            self.extend(config, trial)
        overlap = sorted(set(trial.params) & set(self.fixed))
        if overlap:
            raise FlowOptunaError(
                f"hydra.sweeper.custom_search_space suggests {overlap}, which are fixed values in "
                "hydra.sweeper.params or on the command line. Remove one of the two"
            )
        overrides = [f"{k}={v}" for k, v in trial.params.items()]
        return trial, overrides + [f"{k}={v}" for k, v in self.fixed.items()]


def _custom(path: str) -> Callable[[DictConfig, Trial], None]:
    from hydra.utils import get_method

    try:
        return get_method(path)
    except Exception as error:
        raise FlowOptunaError(
            f"hydra.sweeper.custom_search_space={path!r} cannot be imported "
            f"({str(error).splitlines()[0]}). Give the dotted path of a function "
            "(config, trial) -> None, e.g. my_app.search.extend"
        ) from None
