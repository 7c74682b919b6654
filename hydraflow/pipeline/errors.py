"""The errors a pipeline raises on purpose: one message that names the stages involved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PipelineDefinitionError", "PipelineError", "PipelineRunError", "StageResultError"]


class PipelineError(Exception):
    """Base class of every error the pipeline package raises on purpose."""


class PipelineDefinitionError(PipelineError, ValueError):
    """The pipeline or a ``run`` argument is malformed: a cycle, an unknown or duplicate stage name,
    a stage function whose parameters cannot be filled, or an impossible selection."""


class StageResultError(PipelineError):
    """A stage's return value cannot be handed on (e.g. a task stage returned something that
    cloudpickle cannot serialise)."""


class PipelineRunError(PipelineError):
    """One or more stages failed; the others ran as far as their dependencies allowed.

    Attributes:
        failed: Stage name → the error that stage raised.
        not_run: Stages that were skipped because an upstream stage failed.
        results: Stage name → return value of every stage that did finish (or was a cache hit).
    """

    def __init__(
        self,
        failed: Mapping[str, BaseException],
        not_run: Sequence[str],
        results: Mapping[str, Any],
    ) -> None:
        self.failed = dict(failed)
        self.not_run = list(not_run)
        self.results = dict(results)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"stage {name!r} failed: {_one_line(err)}" for name, err in self.failed.items()]
        text = "Pipeline failed: " + "; ".join(parts) + "."
        if self.not_run:
            text += " Not run (they depend on a failed stage): " + ", ".join(self.not_run) + "."
        text += " Fix the failing stage and run again: finished stages are reused from the cache."
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.failed, self.not_run, self.results))


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, PipelineError):
        text = f"{type(error).__name__}: {text}"
    return text
