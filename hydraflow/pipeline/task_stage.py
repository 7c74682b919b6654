"""Running one stage as a Flow task, on any provider (through :mod:`hydraflow.task_call`).

The stage call (function and keyword arguments) runs as a pickled call; its value, or the error it
raised, comes back. On the local provider the stage writes straight into its output folder. On a
provider that does not share this machine's files (``ssh``, ``mithril``, ...) the upstream stages'
output folders travel with the spec, ``ctx.output_dir`` and ``ctx.inputs`` name folders on the
task's host, and the output folder comes home before the stage's record is written. ``mlflow``
calls inside such a stage reach the stage's run only through a tracking server the host can reach
(an ``http(s)`` tracking URI); return values and files come home on every provider.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydraflow.pipeline.errors import PipelineDefinitionError, PipelineError, StageResultError
from hydraflow.pipeline.stage import Stage, StageContext, StageOutput

if TYPE_CHECKING:
    from hydraflow.task_call import CallFolder

__all__ = ["check_resources", "run_as_task"]

# Stage resources that are not TaskConfig fields: where the task runs and which Python runs it.
_OWN_KEYS = ("provider", "python")
DEFAULT_REMOTE_PYTHON = "python3"


def _task_fields(stage: Stage) -> dict[str, Any]:
    fields = {k: v for k, v in (stage.resources or {}).items() if k not in _OWN_KEYS}
    return {"name": f"stage-{stage.name}"[:100], **fields}


def _provider_name(stage: Stage) -> str:
    from flow_backend.settings import load_settings

    return str((stage.resources or {}).get("provider") or load_settings().provider)


def check_resources(stage: Stage) -> None:
    """Raise :class:`PipelineDefinitionError` if the stage's resources are no valid TaskConfig."""
    from flow_backend import TaskConfig
    from flow_backend.errors import FlowError

    fields = _task_fields(stage)
    provider = (stage.resources or {}).get("provider")
    try:
        if provider is not None:
            from flow_backend.providers import provider_class

            provider_class(str(provider))
        TaskConfig(**{**fields, "command": ["true"]})
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
        PipelineError: The task ended without a result (its log tail is in the message), or the
            provider cannot be used.
        BaseException: Whatever the stage function raised in the task.
    """
    from flow_backend import Flow
    from flow_backend.errors import FlowError
    from hydraflow.task_call import (
        CallCancelled,
        CallFolder,
        CallNotPicklable,
        CallTaskError,
        run_call,
    )
    from hydraflow.task_call_runner import UnpicklableValue

    what = f"Stage {stage.name!r}"
    provider = _provider_name(stage)
    try:
        flow = Flow(provider=provider)
    except FlowError as error:
        raise PipelineError(f"{what} cannot run as a Flow task on {provider!r}: {error}") from None
    with flow:
        folder = CallFolder(flow.provider.shares_files, stage.name)
        try:
            env, calls = _task_env(folder, tracking_uri, run_id), dict(kwargs)
            home: dict[str, Path] = {}
            make_dirs: list[str] = []
            if not folder.shares_files:  # the stage's folders as the task's host sees them
                out = folder.task_path(folder.local / "out")
                calls = {k: _on_host(v, folder, out) for k, v in kwargs.items()}
                home, make_dirs = {out: output_dir}, [out]
            python = (stage.resources or {}).get("python") or (
                sys.executable if folder.shares_files else DEFAULT_REMOTE_PYTHON
            )
            return run_call(
                stage.fn,
                calls,
                folder,
                what=what,
                flow=flow,
                task_fields=_task_fields(stage),
                python=str(python),
                cancel=cancel,
                env=env,
                make_dirs=make_dirs,
                bring_home=home,
                on_start=on_start,
            )
        except CallNotPicklable as error:
            raise StageResultError(f"{error}; pass picklable upstream values") from None
        except UnpicklableValue as error:
            raise StageResultError(
                f"{error}; return picklable values, and write anything else to ctx.output_dir"
            ) from None
        except CallCancelled as error:
            raise PipelineError(
                f"{what}: its Flow task {error.task_id} was cancelled because the pipeline was "
                "interrupted"
            ) from None
        except CallTaskError as error:
            raise PipelineError(str(error)) from None
        except FlowError as error:
            raise PipelineError(
                f"{what}: could not run as a Flow task on provider {provider!r}: {error}"
            ) from None
        finally:
            folder.remove()


def _task_env(folder: CallFolder, tracking_uri: str | None, run_id: str | None) -> dict[str, str]:
    """``PYTHONPATH`` (this process's, or the uploaded code) and the stage's MLflow run (where
    the task can reach its store: this machine's files, or a tracking server)."""
    if folder.shares_files:
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    else:
        env = {"PYTHONPATH": "."}
    reachable = folder.shares_files or (tracking_uri or "").startswith(("http://", "https://"))
    if tracking_uri and run_id and reachable:
        env.update({"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_RUN_ID": run_id})
    return env


def _on_host(value: Any, folder: CallFolder, out: str) -> Any:
    """A keyword argument as the task's host sees it: the stage context's folders moved there."""
    if not isinstance(value, StageContext):
        return value
    inputs = {name: _input_on_host(o, folder) for name, o in value.inputs.items()}
    return dataclasses.replace(value, output_dir=Path(out), inputs=inputs)


def _input_on_host(output: StageOutput, folder: CallFolder) -> StageOutput:
    """An upstream stage's output, its folder copied into the call's (uploaded with the spec)."""
    staged = folder.local / "inputs" / output.name
    if output.output_dir.is_dir():
        shutil.copytree(output.output_dir, staged)
    there = Path(folder.task_path(staged))
    files = {relative: there / relative for relative in output.files}
    return dataclasses.replace(output, output_dir=there, files=files)
