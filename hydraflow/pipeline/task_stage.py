"""Running one stage as a Flow task.

The stage call (function and keyword arguments) is cloudpickled into a spec file;
``python -m hydraflow.pipeline._stage_runner <spec>`` runs it as a task and writes ``result.pkl``
(or ``error.pkl``) beside the spec, which is read back here. The stage writes its files straight
into its output folder, so the task must see this machine's file system (the local provider).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cloudpickle

from hydraflow.pipeline.errors import PipelineDefinitionError, PipelineError, StageResultError
from hydraflow.pipeline.stage import Stage

__all__ = ["check_resources", "run_as_task"]

RESULT_FILE = "result.pkl"
ERROR_FILE = "error.pkl"
TRACEBACK_FILE = "error.txt"
_LOG_TAIL = 30


def _task_fields(stage: Stage, command: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    fields = {k: v for k, v in (stage.resources or {}).items() if k != "provider"}
    extra_env = {**env, **dict(fields.pop("env", None) or {})}
    return {
        "name": f"stage-{stage.name}"[:100],
        "command": command,
        "env": extra_env,
        "working_dir": os.getcwd(),
        **fields,
    }


def _provider_name(stage: Stage) -> str:
    """The provider the stage's task runs on; only ``local`` shares this machine's files."""
    from flow_backend.settings import load_settings

    name = (stage.resources or {}).get("provider") or load_settings().provider
    if name != "local":
        raise PipelineDefinitionError(
            f"Stage {stage.name!r} would run as a Flow task on provider {name!r}, but stage tasks "
            "need the local provider (they read and write this machine's files); set "
            "resources={'provider': 'local', ...} or FLOW_PROVIDER=local"
        )
    return str(name)


def check_resources(stage: Stage) -> None:
    """Raise :class:`PipelineDefinitionError` if the stage's resources are no valid TaskConfig."""
    from flow_backend import TaskConfig
    from flow_backend.errors import FlowError

    provider = (stage.resources or {}).get("provider")
    if provider is not None and provider != "local":
        _provider_name(stage)
    try:
        TaskConfig(**_task_fields(stage, ["true"], {}))
    except (FlowError, TypeError, ValueError) as error:
        raise PipelineDefinitionError(
            f"Stage {stage.name!r}: resources {stage.resources!r} are not valid task settings: "
            f"{error}"
        ) from None


def run_as_task(
    stage: Stage,
    kwargs: dict[str, Any],
    output_dir: Path,
    cancel: threading.Event,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> Any:
    """Run ``stage.fn(**kwargs)`` as a Flow task and return its value.

    Raises:
        StageResultError: The call cannot be pickled, or the value returned in the task cannot.
        PipelineError: The task ended without a result (its log tail is in the message).
        BaseException: Whatever the stage function raised in the task.
    """
    from flow_backend import Flow
    from flow_backend.errors import TaskTimeoutError

    spec_dir = Path(tempfile.mkdtemp(prefix=f"hydraflow-stage-{stage.name}-"))
    try:
        try:
            blob = cloudpickle.dumps({"stage": stage.name, "fn": stage.fn, "kwargs": kwargs})
        except Exception as error:
            raise StageResultError(
                f"Stage {stage.name!r} runs as a Flow task but its function or inputs cannot be "
                f"pickled ({type(error).__name__}: {error}); pass picklable upstream values"
            ) from None
        spec = spec_dir / "spec.pkl"
        spec.write_bytes(blob)
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
        if tracking_uri and run_id:
            env.update({"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_RUN_ID": run_id})
        command = [sys.executable, "-m", "hydraflow.pipeline._stage_runner", str(spec)]
        provider = _provider_name(stage)
        from flow_backend import TaskConfig

        with Flow(provider=provider) as flow:
            task = flow.run(TaskConfig(**_task_fields(stage, command, env)))
            if on_start is not None:
                on_start(task)
            try:
                while True:
                    try:
                        status = task.wait(timeout=0.5)
                        break
                    except TaskTimeoutError:
                        if cancel.is_set():
                            task.stop()
                            raise PipelineError(
                                f"Stage {stage.name!r}: its Flow task {task.task_id} was cancelled "
                                "because the pipeline was interrupted"
                            ) from None
            except BaseException:
                if not task.refresh().is_terminal:
                    task.stop()
                raise
            return _read_back(stage, spec_dir, task, status)
    finally:
        shutil.rmtree(spec_dir, ignore_errors=True)


def _read_back(stage: Stage, spec_dir: Path, task: Any, status: Any) -> Any:
    if (spec_dir / RESULT_FILE).exists():
        return cloudpickle.loads((spec_dir / RESULT_FILE).read_bytes())
    if (spec_dir / ERROR_FILE).exists():
        error = cloudpickle.loads((spec_dir / ERROR_FILE).read_bytes())
        trace = spec_dir / TRACEBACK_FILE
        if isinstance(error, BaseException) and trace.exists():
            error.add_note(f"In Flow task {task.task_id}:\n{trace.read_text()}")
        raise error
    logs = task.logs(tail=_LOG_TAIL)
    raise PipelineError(
        f"Stage {stage.name!r}: its Flow task {task.task_id} ended {status} (exit code "
        f"{task.exit_code}) without a result. Last log lines:\n{logs}"
    )
