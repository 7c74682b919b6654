"""Run a pickled call as a Flow task and bring its outcome home, on any provider.

The one home of "call ``fn(**kwargs)`` in a task": the call is cloudpickled into a spec, the task
runs ``python -m hydraflow.task_call_runner SPEC RESULT [HOLD]``, and the outcome (the value, or
the exception raised in the task) comes back here. Where the task runs decides, once, how files
travel (:class:`CallFolder`):

* a provider that shares this machine's files (``local``): the spec and outcome sit in a temporary
  folder, the task sees this machine's paths;
* any other (``ssh``, ``mithril``, ...): the spec is staged under ``.hydraflow/calls/<id>/`` of the
  working folder and uploaded with the code; the task writes its outcome and files there and waits;
  each poll tries to download the outcome, then the folders to bring home, then writes the
  ``collected`` mark that lets the task end.

Pipeline task stages use it (``hydraflow.pipeline.task_stage``). The launcher's per-job runner
shares its task side (the outcome file, ``collected`` mark, hold) and the upload check.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cloudpickle

from hydraflow.task_call_runner import HOLD_SECONDS, collected_mark

if TYPE_CHECKING:
    from flow_backend import Flow, Task

__all__ = [
    "CallCancelled",
    "CallFolder",
    "CallNotPicklable",
    "CallTaskError",
    "not_uploaded",
    "run_call",
]

STAGE_DIR = ".hydraflow"
RUNNER_MODULE = "hydraflow.task_call_runner"
POLL_SECONDS = 0.5
_LOG_TAIL = 30


class CallTaskError(Exception):
    """The call cannot be sent (not picklable, not uploaded) or its task left no outcome."""


class CallNotPicklable(CallTaskError):
    """The function or its arguments cannot be pickled: no task was started."""


class CallCancelled(CallTaskError):
    """The call's task was stopped because ``cancel`` was set."""

    def __init__(self, what: str, task_id: str) -> None:
        super().__init__(f"{what}: its Flow task {task_id} was cancelled")
        self.task_id = task_id


def not_uploaded(code_root: Path, paths: Iterable[Path]) -> list[Path]:
    """Those of ``paths`` (under ``code_root``) the code upload would leave out (ignore files)."""
    from flow_backend.remote.code_upload import collect_files

    uploaded = set(collect_files(code_root))
    return [p for p in paths if p.relative_to(code_root).as_posix() not in uploaded]


class CallFolder:
    """Where one call's files live: here, and as its task sees them."""

    def __init__(self, shares_files: bool, name: str) -> None:
        self.shares_files = shares_files
        self.code_root = Path(os.getcwd())
        if shares_files:
            self.local = Path(tempfile.mkdtemp(prefix=f"hydraflow-call-{name}-"))
            self.remote = PurePosixPath(self.local)
        else:
            relative = PurePosixPath(STAGE_DIR, "calls", f"{name}-{secrets.token_hex(4)}")
            self.local = self.code_root / relative
            self.local.mkdir(parents=True)
            self.remote = relative  # relative to the task's working folder: the uploaded code

    def task_path(self, local: Path) -> str:
        """How the task names ``local`` (a path inside this folder)."""
        if self.shares_files:
            return str(local)
        return str(self.remote / local.relative_to(self.local).as_posix())

    def remove(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)
        if not self.shares_files:  # drop the staging folders this left empty
            for parent in (self.local.parent, self.local.parent.parent):
                try:
                    parent.rmdir()
                except OSError:
                    break


def run_call(
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any],
    folder: CallFolder,
    *,
    what: str,
    flow: Flow,
    task_fields: Mapping[str, Any],
    python: str,
    cancel: threading.Event,
    env: Mapping[str, str] | None = None,
    make_dirs: Iterable[str] = (),
    bring_home: Mapping[str, Path] | None = None,
    on_start: Callable[[Task], None] | None = None,
) -> Any:
    """Run ``fn(**kwargs)`` as a Flow task of ``flow``; return its value or raise its error.

    Where the task does not share this machine's files, the module of ``fn`` travels by value
    unless the task can import it (under the uploaded code, or an installed package).

    Args:
        folder: The call's :class:`CallFolder` (files staged in it travel with the spec).
        what: Names the call in messages (``"Stage 'train'"``).
        task_fields: ``TaskConfig`` fields (instance type, ...) besides command, env and code.
        python: The task's Python (needs cloudpickle, and hydraflow importable).
        make_dirs: Folders (as the task names them) the runner makes before the call.
        bring_home: Task path → local folder, downloaded once the outcome is there.
        on_start: Called with the task once it started.

    Raises:
        CallTaskError: The call cannot be pickled or uploaded, or its task ended without outcome.
        CallCancelled: ``cancel`` was set while the task ran (it is stopped).
        BaseException: Whatever ``fn`` raised in the task (traceback as a note).
    """
    from flow_backend import TaskConfig

    spec = folder.local / "spec.pkl"
    call = {"fn": fn, "kwargs": dict(kwargs), "what": what, "make_dirs": list(make_dirs)}
    try:
        with _by_value(None if folder.shares_files else _module_to_ship(fn, folder.code_root)):
            spec.write_bytes(cloudpickle.dumps(call))
    except Exception as error:
        raise CallNotPicklable(
            f"{what} runs as a Flow task but its function or inputs cannot be pickled "
            f"({type(error).__name__}: {error})"
        ) from None
    result = folder.local / "result.pkl"
    command = [python, "-m", RUNNER_MODULE, folder.task_path(spec), folder.task_path(result)]
    code: dict[str, Any] = {"working_dir": str(folder.code_root)}
    if not folder.shares_files:
        command.append(str(HOLD_SECONDS))
        code = {"upload_code": True, "code_root": str(folder.code_root)}
        staged = [p for p in folder.local.rglob("*") if p.is_file()]
        left_out = not_uploaded(folder.code_root, staged)
        if left_out:
            raise CallTaskError(
                f"{what}: {left_out[0].relative_to(folder.code_root)} would not be uploaded: an "
                f"ignore file (.gitignore/.flowignore) of {folder.code_root} excludes it. Add the "
                f"line `!{STAGE_DIR}/` to {folder.code_root / '.flowignore'}"
            )
    env = {**(env or {}), **dict(task_fields.get("env") or {})}  # the task fields' env wins
    config = TaskConfig(**{**code, **task_fields, "command": command, "env": env})
    task = flow.run(config)
    if on_start is not None:
        on_start(task)
    try:
        outcome = _wait_for_outcome(flow, task, folder, result, cancel, what)
        if not folder.shares_files:
            _bring_home(flow, task, bring_home or {}, what)
    except BaseException:
        if not task.refresh().is_terminal:
            task.stop()
        raise
    if not folder.shares_files:
        _release(flow, task, folder.task_path(result))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _module_to_ship(fn: Callable[..., Any], code_root: Path) -> ModuleType | None:
    """The module of ``fn`` when a remote task could not import it: not uploaded, not installed."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or file is None or module.__name__ == "__main__":
        return None  # cloudpickle ships __main__'s functions by value anyway
    path = Path(file).resolve()
    if path.is_relative_to(code_root.resolve()) or {"site-packages", "dist-packages"} & set(
        path.parts
    ):
        return None
    return module


@contextmanager
def _by_value(module: ModuleType | None) -> Iterator[None]:
    if module is None:
        yield
        return
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _wait_for_outcome(
    flow: Flow, task: Task, folder: CallFolder, result: Path, cancel: threading.Event, what: str
) -> dict[str, Any]:
    from flow_backend.errors import TaskTimeoutError

    while True:
        try:
            status = task.wait(timeout=POLL_SECONDS)
            ended = True
        except TaskTimeoutError:
            ended = False
        # here: read once the task ended (it exits right after its outcome); there: while it
        # waits for the `collected` mark
        outcome = _fetch(flow, task, folder, result) if ended or not folder.shares_files else None
        if outcome is not None:
            return outcome
        if ended:
            why = f" ({task.message})" if task.message else ""
            raise CallTaskError(
                f"{what}: its Flow task {task.task_id} ended {status}{why} (exit code "
                f"{task.exit_code}) without a result. Last log lines:\n{task.logs(tail=_LOG_TAIL)}"
            )
        if cancel.is_set():
            task.stop()
            raise CallCancelled(what, task.task_id)


def _fetch(flow: Flow, task: Task, folder: CallFolder, result: Path) -> dict[str, Any] | None:
    """The outcome, once the task wrote it (downloaded first where files are not shared)."""
    if not folder.shares_files:
        from flow_backend.errors import FlowError

        pending = result.with_name(result.name + ".part")
        try:
            flow.provider.download(task.task_id, folder.task_path(result), pending)
        except FlowError:  # not written yet (or not reachable yet: the next poll tries again)
            return None
        pending.replace(result)
    if not result.is_file():
        return None
    outcome: dict[str, Any] = cloudpickle.loads(result.read_bytes())
    return outcome


def _bring_home(flow: Flow, task: Task, folders: Mapping[str, Path], what: str) -> None:
    from flow_backend.errors import FlowError

    for remote, local in folders.items():
        if local.exists():
            shutil.rmtree(local)
        try:
            flow.provider.download(task.task_id, remote, local)
        except FlowError as error:
            raise CallTaskError(
                f"{what}: its Flow task {task.task_id} finished, but {remote} could not be "
                f"brought home to {local}: {error}"
            ) from None


def _release(flow: Flow, task: Task, result: str) -> None:
    """Write the ``collected`` mark: the task ends now, not after its hold time."""
    from flow_backend.errors import FlowError

    with suppress(FlowError):  # else the task stops waiting by itself
        flow.provider.shell(task.task_id, f": > {collected_mark(result)}")
