"""``Pipeline``: stages, their order, and which of them a ``run`` executes.

Selection (all names are stage names; each argument takes one name or a list):

* ``force`` — re-run these stages and everything downstream of them, ignoring the cache.
* ``only`` — consider just these stages; their upstream stages must have a cached result.
* ``until`` — these stages and everything they depend on; nothing downstream.
* ``from_`` — re-run these stages and everything downstream (like ``force``), and nothing else:
  their other upstream stages must have a cached result.

The selections intersect. Every other selected stage runs unless a FINISHED run with its cache key
exists, in which case its recorded value and files are reused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from hydraflow.conventions import resolve_tracking_uri
from hydraflow.pipeline.cache import cache_key, code_fingerprint, config_section
from hydraflow.pipeline.errors import PipelineDefinitionError, PipelineRunError
from hydraflow.pipeline.executor import StagePlan, execute, say
from hydraflow.pipeline.graph import StageGraph
from hydraflow.pipeline.records import PipelineRecords
from hydraflow.pipeline.stage import Stage, StageOutput

__all__ = ["Pipeline", "PipelineResult"]

DEFAULT_EXPERIMENT = "pipeline"


class PipelineResult(dict[str, Any]):
    """``{stage name: return value}`` of every stage that finished or was reused, plus details.

    Attributes:
        outputs: Stage name → :class:`StageOutput` (value, output folder, files, run id, cached).
        executed: Stages computed in this run, in dependency order.
        skipped: Stages reused from an earlier run's record.
        run_id: The pipeline's parent MLflow run.
        experiment_id: The MLflow experiment holding the runs.
    """

    def __init__(
        self, outputs: dict[str, StageOutput], order: Sequence[str], run_id: str, experiment_id: str
    ) -> None:
        super().__init__((name, outputs[name].value) for name in order if name in outputs)
        self.outputs = {name: outputs[name] for name in order if name in outputs}
        self.executed = [n for n, o in self.outputs.items() if not o.cached]
        self.skipped = [n for n, o in self.outputs.items() if o.cached]
        self.run_id = run_id
        self.experiment_id = experiment_id


class Pipeline:
    """A DAG of :class:`Stage` objects.

    Args:
        stages: Every stage of the pipeline, each with its ``depends_on`` already declared.

    Raises:
        PipelineDefinitionError: Duplicate names, a dependency outside the pipeline, a cycle, or a
            stage function with a parameter nothing can fill.
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        if isinstance(stages, Stage) or not isinstance(stages, Iterable):
            raise PipelineDefinitionError(f"Pipeline takes a list of stages, got {stages!r}")
        self.stages = list(stages)
        self.graph = StageGraph(self.stages)
        for stage in self.stages:
            stage.check_signature()
            if stage.runs_as_task:
                from hydraflow.pipeline.task_stage import check_resources

                check_resources(stage)

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(self.graph.order)}])"

    def cache_keys(self, cfg: Any = None) -> dict[str, str]:
        """Each stage's cache key for ``cfg``, in dependency order."""
        return self._keys(self._sections(cfg))

    def _sections(self, cfg: Any) -> dict[str, tuple[Any, Any]]:
        """Each stage's config section: (value handed to it, plain value for the key)."""
        return {
            name: config_section(cfg, self.graph.stages[name].config_key)
            for name in self.graph.order
        }

    def _keys(self, sections: dict[str, tuple[Any, Any]]) -> dict[str, str]:
        keys: dict[str, str] = {}
        for name in self.graph.order:
            fingerprint = code_fingerprint(self.graph.stages[name].fn)
            upstream = {u: keys[u] for u in self.graph.upstream(name)}
            keys[name] = cache_key(name, sections[name][1], fingerprint, upstream)
        return keys

    def run(
        self,
        cfg: Any = None,
        force: str | Iterable[str] | None = None,
        only: str | Iterable[str] | None = None,
        until: str | Iterable[str] | None = None,
        from_: str | Iterable[str] | None = None,
        max_workers: int = 1,
        experiment: str | None = None,
    ) -> PipelineResult:
        """Run the pipeline (see the module docstring for the selection arguments).

        Args:
            cfg: The config (DictConfig or mapping); ``cfg[stage.name]`` is each stage's section.
            force: Stages to re-run, with everything downstream.
            only: Restrict the run to these stages.
            until: Run up to and including these stages.
            from_: Re-run from these stages on.
            max_workers: How many independent stages may run at the same time.
            experiment: MLflow experiment; default: the active run's, ``MLFLOW_EXPERIMENT_NAME``,
                the Hydra job name, else ``"pipeline"``.

        Returns:
            ``{stage name: return value}`` (a :class:`PipelineResult`).

        Raises:
            PipelineDefinitionError: Unknown stage names, an empty selection, or a needed upstream
                stage that is not selected and has no cached result.
            PipelineRunError: A stage failed; it names the failed stages and those not run.
        """
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise PipelineDefinitionError(
                f"max_workers must be a positive integer, got {max_workers!r}"
            )
        self.graph = graph = StageGraph(self.stages)  # depends_on() may have been called since
        selected, forced = self._select(force, only, until, from_)
        sections = self._sections(cfg)
        keys = self._keys(sections)
        plans: dict[str, StagePlan] = {}
        for name in graph.order:
            if name in selected:
                handed, section = sections[name]
                plans[name] = StagePlan(
                    graph.stages[name], keys[name], handed, section, force=name in forced
                )
        tracking_uri = resolve_tracking_uri()
        active_run_id, active_experiment = _active_run(tracking_uri)
        if experiment is None and active_experiment is not None:
            records = PipelineRecords(tracking_uri, experiment_id=active_experiment)
        else:
            records = PipelineRecords(tracking_uri, experiment or _default_experiment())
        preloaded = self._preload(graph.ancestors(selected) - selected, keys, records, selected)
        parent = records.start_parent("pipeline", active_run_id)
        status = "KILLED"
        report = None
        try:
            report = execute(plans, graph, records, parent, preloaded, max_workers, cfg)
            status = "FAILED" if report.failed else "FINISHED"
        finally:
            summary = _summary(graph.order, selected, preloaded, report)
            records.end_parent(parent, summary, status)
        assert report is not None
        result = PipelineResult(report.outputs, graph.order, parent, records.experiment_id)
        if report.failed:
            first_error = next(iter(report.failed.values()))  # its traceback is shown as the cause
            raise PipelineRunError(report.failed, report.not_run, dict(result)) from first_error
        return result

    # -- selection -------------------------------------------------------------------------------
    def _select(
        self,
        force: str | Iterable[str] | None,
        only: str | Iterable[str] | None,
        until: str | Iterable[str] | None,
        from_: str | Iterable[str] | None,
    ) -> tuple[set[str], set[str]]:
        graph = self.graph
        selected = set(graph.stages)
        forced: set[str] = set()
        if only is not None:
            selected &= set(graph.check_names(_names(only), "only"))
        if until is not None:
            names = graph.check_names(_names(until), "until")
            selected &= set(names) | graph.ancestors(names)
        if from_ is not None:
            names = graph.check_names(_names(from_), "from_")
            start = set(names) | graph.descendants(names)
            selected &= start
            forced |= start
        if force is not None:
            names = graph.check_names(_names(force), "force")
            forced |= set(names) | graph.descendants(names)
        if not selected:
            raise PipelineDefinitionError(
                f"The selection only={only!r}, until={until!r}, from_={from_!r} leaves no stage "
                "to run; check that the stages named lie on one path"
            )
        return selected, forced & selected

    def _preload(
        self, needed: set[str], keys: dict[str, str], records: PipelineRecords, selected: set[str]
    ) -> dict[str, StageOutput]:
        outputs: dict[str, StageOutput] = {}
        missing: list[str] = []
        for name in self.graph.order:
            if name not in needed:
                continue
            found = records.find_cached(name, keys[name])
            if found is None:
                missing.append(name)
            else:
                outputs[name] = found
                say(name, f"not selected, reusing run {found.run_id}")
        if missing:
            users = sorted(s for s in selected if set(self.graph.ancestors([s])) & set(missing))
            raise PipelineDefinitionError(
                f"Stage(s) {', '.join(missing)} are needed by the selected stage(s) "
                f"{', '.join(users)} but are not selected and have no finished run with their "
                "current cache key; include them in the selection (or run the whole pipeline once)"
            )
        return outputs


def _names(value: str | Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    return list(value)


def _active_run(tracking_uri: str) -> tuple[str | None, str | None]:
    """The active MLflow run (id, experiment id) if it lives in the same store."""
    import mlflow

    run = mlflow.active_run()
    if run is None or mlflow.get_tracking_uri() != tracking_uri:
        return None, None
    return str(run.info.run_id), str(run.info.experiment_id)


def _default_experiment() -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        return name
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return str(HydraConfig.get().job.name)
    except (ImportError, ValueError):
        pass
    return DEFAULT_EXPERIMENT


def _summary(
    order: Sequence[str], selected: set[str], preloaded: dict[str, StageOutput], report: Any
) -> dict[str, dict[str, str]]:
    summary: dict[str, dict[str, str]] = {}
    for name in order:
        entry: dict[str, str]
        if report is not None and name in report.outputs:
            output = report.outputs[name]
            entry = {"status": "cached" if output.cached else "executed", "run_id": output.run_id}
        elif report is not None and name in report.failed:
            entry = {"status": "failed", "run_id": report.run_ids.get(name, "")}
        elif report is not None and name in report.not_run:
            entry = {"status": "not_run"}
        elif name in preloaded:
            entry = {"status": "cached", "run_id": preloaded[name].run_id}
        elif name in selected:
            entry = {
                "status": "interrupted",
                "run_id": report.run_ids.get(name, "") if report else "",
            }
        else:
            entry = {"status": "not_selected"}
        summary[name] = entry
    return summary
