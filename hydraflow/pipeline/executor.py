"""Runs planned stages in dependency order, independent ones in parallel, and keeps going past a
failure for every stage that does not depend on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hydraflow.pipeline.cache import stage_lock
from hydraflow.pipeline.errors import PipelineError
from hydraflow.pipeline.graph import StageGraph
from hydraflow.pipeline.records import PipelineRecords
from hydraflow.pipeline.stage import Stage, StageContext, StageOutput

__all__ = ["ExecutionReport", "StagePlan", "execute"]


@dataclass
class StagePlan:
    """What to do with one selected stage.

    Attributes:
        stage: The stage.
        key: Its cache key.
        cfg: The config section handed to the function.
        section: The plain section (params, hash).
        force: Run even if a finished run with ``key`` exists.
    """

    stage: Stage
    key: str
    cfg: Any
    section: Any
    force: bool = False


@dataclass
class ExecutionReport:
    """Outcome of :func:`execute`."""

    outputs: dict[str, StageOutput] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)


def say(stage: str, text: str) -> None:
    """Print one progress line for a stage."""
    print(f"[pipeline] {stage}: {text}", flush=True)


def execute(
    plans: dict[str, StagePlan],
    graph: StageGraph,
    records: PipelineRecords,
    parent_run_id: str,
    preloaded: dict[str, StageOutput],
    max_workers: int,
    pipeline_cfg: Any,
) -> ExecutionReport:
    """Run ``plans`` (upstream outputs outside the plan come from ``preloaded``)."""
    report = ExecutionReport(outputs=dict(preloaded))
    cancel = threading.Event()
    pending = [name for name in graph.order if name in plans]
    running: dict[Future[StageOutput], str] = {}
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hydraflow-stage")
    try:
        while pending or running:
            for name in list(pending):
                deps = graph.upstream(name)
                blocked = [d for d in deps if d in report.failed or d in report.not_run]
                if blocked:
                    pending.remove(name)
                    report.not_run.append(name)
                    say(name, f"not run (upstream stage {blocked[0]!r} did not finish)")
                elif all(d in report.outputs for d in deps):
                    pending.remove(name)
                    inputs = {d: report.outputs[d] for d in deps}
                    future = pool.submit(
                        _run_stage,
                        plans[name],
                        inputs,
                        records,
                        parent_run_id,
                        pipeline_cfg,
                        cancel,
                        report.run_ids,
                    )
                    running[future] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                try:
                    report.outputs[name] = future.result()
                except Exception as error:
                    report.failed[name] = error
                    say(name, f"FAILED: {type(error).__name__}: {error}")
    except BaseException:
        cancel.set()  # task stages cancel their Flow task; in-process stages finish their call
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def _run_stage(
    plan: StagePlan,
    inputs: dict[str, StageOutput],
    records: PipelineRecords,
    parent_run_id: str,
    pipeline_cfg: Any,
    cancel: threading.Event,
    run_ids: dict[str, str],
) -> StageOutput:
    stage = plan.stage

    # Equal keys (another sweep job, another process) wait here, then find this run's record.
    def waiting() -> None:
        say(stage.name, "waiting: another process is computing the same cache key")

    with stage_lock(records.lock_dir, plan.key, cancel, on_wait=waiting):
        if not plan.force:
            cached = records.find_cached(stage.name, plan.key)
            if cached is not None:
                say(stage.name, f"skipped, reusing run {cached.run_id} (cache key {plan.key[:12]})")
                return cached
        if cancel.is_set():
            raise PipelineError(
                f"Stage {stage.name!r} was not started: the pipeline was interrupted"
            )
        run_id, output_dir = records.start_stage(parent_run_id, stage.name, plan.key, plan.section)
        run_ids[stage.name] = run_id
        where = f" as a Flow task ({stage.resources})" if stage.runs_as_task else ""
        say(stage.name, f"running{where} (run {run_id}, cache key {plan.key[:12]})")
        context = StageContext(
            name=stage.name,
            cfg=plan.cfg,
            inputs=inputs,
            output_dir=output_dir,
            run_id=run_id,
            tracking_uri=records.tracking_uri,
            pipeline_cfg=pipeline_cfg,
        )
        kwargs = stage.build_kwargs(plan.cfg, context, {n: o.value for n, o in inputs.items()})
        started = time.monotonic()
        try:
            if stage.runs_as_task:
                from hydraflow.pipeline.task_stage import run_as_task

                value = run_as_task(
                    stage,
                    kwargs,
                    output_dir,
                    cancel,
                    records.tracking_uri,
                    run_id,
                    on_start=lambda task: records.tag_task(run_id, task),
                )
            else:
                with _active_mlflow_run(records.tracking_uri, run_id):
                    value = stage.fn(**kwargs)
        except BaseException as error:
            records.fail_stage(run_id, error)
            raise
        output = records.finish_stage(run_id, stage.name, plan.key, value, output_dir)
        say(stage.name, f"done in {time.monotonic() - started:.1f}s")
        return output


@contextmanager
def _active_mlflow_run(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Make the stage's run MLflow's active run in this thread, so ``mlflow.log_metric`` (and
    ``hydraflow.tracking``) inside the stage function land in it. Only when the fluent API points
    at the same store; the active-run stack is per thread."""
    import mlflow

    if mlflow.get_tracking_uri() != tracking_uri or mlflow.active_run() is not None:
        yield
        return
    mlflow.start_run(run_id=run_id)
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)
