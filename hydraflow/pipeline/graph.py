"""The stage graph: validation, dependency order, ancestors and descendants."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from hydraflow.pipeline.errors import PipelineDefinitionError
from hydraflow.pipeline.stage import Stage

__all__ = ["StageGraph"]


class StageGraph:
    """A validated DAG of stages, in a stable dependency order.

    Raises:
        PipelineDefinitionError: On a duplicate name, a dependency on a stage that is not in the
            pipeline, or a cycle — naming the stages involved.
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages: dict[str, Stage] = {}
        for stage in stages:
            if not isinstance(stage, Stage):
                raise PipelineDefinitionError(f"Pipeline takes Stage objects, got {stage!r}")
            if stage.name in self.stages:
                raise PipelineDefinitionError(
                    f"Duplicate stage name {stage.name!r}: every stage in a pipeline needs its "
                    "own name"
                )
            self.stages[stage.name] = stage
        for stage in stages:
            for upstream in stage.upstream:
                if self.stages.get(upstream.name) is not upstream:
                    raise PipelineDefinitionError(
                        f"Stage {stage.name!r} depends on stage {upstream.name!r}, which is not in "
                        f"the pipeline (stages: {', '.join(self.stages)}); add it to Pipeline([...])"
                    )
        self.order: list[str] = self._topological_order()

    def upstream(self, name: str) -> list[str]:
        """Names of the direct upstream stages of ``name``."""
        return [s.name for s in self.stages[name].upstream]

    def downstream(self, name: str) -> list[str]:
        """Names of the stages that depend directly on ``name``."""
        return [n for n, s in self.stages.items() if any(u.name == name for u in s.upstream)]

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """Every stage the given stages depend on, directly or not (excluding themselves)."""
        return self._closure(names, self.upstream)

    def descendants(self, names: Iterable[str]) -> set[str]:
        """Every stage that depends on the given stages, directly or not (excluding themselves)."""
        return self._closure(names, self.downstream)

    def check_names(self, names: Iterable[str], argument: str) -> list[str]:
        """Return ``names`` as a list, or raise naming the unknown one and the known stages."""
        checked = list(names)
        for name in checked:
            if name not in self.stages:
                raise PipelineDefinitionError(
                    f"{argument}: unknown stage {name!r}; the pipeline's stages are "
                    f"{', '.join(self.stages)}"
                )
        return checked

    def _closure(self, names: Iterable[str], step: Callable[[str], list[str]]) -> set[str]:
        found: set[str] = set()
        todo = list(names)
        while todo:
            for nxt in step(todo.pop()):
                if nxt not in found:
                    found.add(nxt)
                    todo.append(nxt)
        return found

    def _topological_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise PipelineDefinitionError(
                    "Dependency cycle between stages: "
                    + " -> ".join(cycle)
                    + " (each depends on the next); remove one of these depends_on() calls"
                )
            state[name] = 1
            for upstream in self.upstream(name):
                visit(upstream, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self.stages:
            visit(name, [])
        return order
