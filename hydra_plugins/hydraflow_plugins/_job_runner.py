"""Run ONE Hydra job of a ``flow`` sweep, on the task side.

``python -m hydra_plugins.hydraflow_plugins._job_runner <spec.pkl>`` restores Hydra's state from the
spec the launcher wrote, calls :func:`hydra.core.utils.run_job` (which runs the callbacks'
``on_job_start`` / ``on_job_end``) and writes the pickled ``JobReturn`` next to the spec.

It runs once per job, so its imports are kept to what running a job needs: no plugin discovery, no
flow_backend, of hydraflow only ``task_call_runner`` (stdlib and cloudpickle; the MLflow callback
imports itself when the job config asks for it).
Exit status: 0 when the job completed, 1 when its task function raised (a result is written in both
cases), 2 when no result could be produced.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hydra_plugins.hydraflow_plugins._paths import SpecLoading, result_path_for
from hydra_plugins.hydraflow_plugins._task_function import load_task_function

# how a task writes its outcome: one home, shared with pipeline task stages (stdlib + cloudpickle)
from hydraflow.task_call_runner import hold_until_collected, portable_error, write_atomic

if TYPE_CHECKING:
    from hydra_plugins.hydraflow_plugins._compose_cache import ComposeCache

COMMON_PARTS = ("hydra_context", "singleton_state", "config")  # the same bytes for every job


class SpareParts:
    """A warm worker's next job's common spec parts, unpickled ahead while it waits for the order.

    Every job of a sweep has the same bytes for Hydra's context, its singletons and the launch
    config (:data:`COMMON_PARTS`), and each job needs fresh objects of them (jobs change them):
    unpickling them takes about 3 ms of a job's start. After a job the worker unpickles them
    again (:meth:`refill`, while the launcher hands out the next job); the next job takes them
    when its parts are those bytes (objects no job has touched, as if unpickled then).
    """

    def __init__(self) -> None:
        self._bytes: dict[str, bytes] = {}
        self._ready: dict[str, Any] = {}

    def take(self, name: str, data: bytes) -> Any:
        """Part ``name`` of a job's spec: the spare one if it was unpickled from ``data``."""
        ready = self._ready.pop(name, None)
        if ready is not None and self._bytes.get(name) == data:
            return ready
        self._bytes[name] = data
        return pickle.loads(data)

    def refill(self) -> None:
        """Unpickle the parts the last job took (or an earlier one), for the next job."""
        with SpecLoading():
            for name, data in self._bytes.items():
                # one that fails is unpickled by the job that needs it (which reports why not)
                with suppress(Exception):
                    if name not in self._ready:
                        self._ready[name] = pickle.loads(data)


@dataclass
class WarmState:
    """What a warm worker keeps from one job to the next (``_worker``)."""

    compose: ComposeCache
    parts: SpareParts = field(default_factory=SpareParts)


SPEC_VERSION = 2


def job_spec(
    num: int,
    overrides: list[str],
    job_id: str,
    parts: dict[str, bytes],
    *,
    cwd: str | None,
    sys_path: list[str],
) -> bytes:
    """The spec file :func:`run` reads: a header with the pickled ``parts`` plus this job's numbers.

    ``cwd`` and ``sys_path`` are the launcher's for a local job; ``None`` and ``[]`` on a remote host,
    where the uploaded code is the working folder.
    """
    this_job = {"num": num, "overrides": overrides, "job_id": job_id}
    header = {
        "version": SPEC_VERSION,
        "sys_path": sys_path,
        "cwd": cwd,
        "parts": {**parts, "job": pickle.dumps(this_job)},
    }
    return pickle.dumps(header)


def _restore_hydra_state(state: dict[str, Any]) -> None:
    # Singleton.set_state() would also re-run plugin discovery (importing every plugin); a job needs
    # only the singletons and resolvers, and Plugins discovers itself lazily if the task asks for it.
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from omegaconf.basecontainer import BaseContainer

    instances = dict(state["instances"])
    instances.pop(Plugins, None)
    Singleton._instances = instances
    BaseContainer._resolvers = state["omegaconf_resolvers"]


def _uncopied_repository(config_loader: Any) -> None:
    """Let Hydra compose from this job's config repository without copying it first.

    Hydra deep-copies its loader's repository on every composition, so that the sources one
    config adds (``hydra.searchpath``) do not stay for the next; this loader was unpickled for
    this job alone and composes once, so the copy protects nothing (it is about a fifth of the
    composition's time: Hydra's packaged configs and every registered structured config).
    """
    repository = getattr(config_loader, "repository", None)
    if repository is not None:
        repository.__deepcopy__ = lambda memo: repository


def _sweep(parts: dict[str, bytes]) -> str:
    """What tells one sweep's jobs from another's: a digest of the spec parts they share."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name in COMMON_PARTS:
        digest.update(parts.get(name, b""))
    return digest.hexdigest()


def _checked(task_function: Any, guard: Callable[[], AbstractContextManager[Any]] | None) -> Any:
    """Wrap the task function so that a return value that cannot be pickled fails the job itself.

    ``guard`` (a warm worker's) is entered around the call: a cancelled job is interrupted in it.
    """
    import cloudpickle

    def task_with_picklable_result(cfg: Any) -> Any:
        with guard() if guard is not None else nullcontext():
            value = task_function(cfg)
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            raise TypeError(
                f"the task function returned a {type(value).__name__} that cannot be pickled "
                f"({type(error).__name__}: {error}); return plain data (numbers, dicts, lists) "
                "or log the object as an MLflow artifact instead"
            ) from None
        return value

    task_with_picklable_result.__name__ = getattr(task_function, "__name__", "task_function")
    task_with_picklable_result.__qualname__ = getattr(task_function, "__qualname__", "task")
    task_with_picklable_result.__module__ = getattr(task_function, "__module__", "__main__")
    return task_with_picklable_result


def run(
    spec_path: Path,
    result_path: Path | None = None,
    sweep_dir: str | None = None,
    guard: Callable[[], AbstractContextManager[Any]] | None = None,
    hold_seconds: float = 0,
    attempt: str | None = None,
    warm: WarmState | None = None,
) -> int:
    """Run the job described by ``spec_path``; return the process exit status.

    ``result_path`` (default: next to the spec) and ``sweep_dir`` (a remote attempt's own
    ``hydra.sweep.dir``) are given by the launcher for jobs on remote hosts, with ``hold_seconds``
    (a task of its own waits that long after its result for the launcher's ``collected`` mark);
    ``guard`` by a warm worker (entered around the task function: see ``_cancel_watch.CancelWatch``);
    ``attempt`` (``hydraflow.sweep_context.TaskAttempt`` as JSON: the task running the job this
    time) by the launcher, handed to the MLflow callback in the job's copy of Hydra's context;
    ``warm`` by a warm worker: what its earlier jobs' compositions share (``_compose_cache``)
    and the common spec parts unpickled ahead (:class:`SpareParts`).
    """
    with spec_path.open("rb") as stream:
        header = pickle.load(stream)
    if header.get("version") != SPEC_VERSION:
        print(f"job spec {spec_path} has version {header.get('version')}, expected {SPEC_VERSION}")
        return 2
    if header.get("cwd"):
        for entry in reversed(header["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        os.chdir(header["cwd"])
    elif os.getcwd() not in sys.path:  # remote: the uploaded code is the working folder
        sys.path.insert(0, os.getcwd())

    import cloudpickle
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from omegaconf import open_dict, read_write

    parts = header["parts"]
    with SpecLoading():  # config.py: skip the catalog import
        # the task function is imported by reference where it can be (see _task_function)
        payload = {
            n: warm.parts.take(n, part) if warm and n in COMMON_PARTS else pickle.loads(part)
            for n, part in parts.items()
            if n != "task_function"
        }
    _restore_hydra_state(payload["singleton_state"])
    setup_globals()
    job = payload["job"]
    hydra_context = payload["hydra_context"]
    if attempt is not None:
        from hydraflow.sweep_context import TaskAttempt, with_attempt

        hydra_context = with_attempt(hydra_context, TaskAttempt.from_json(attempt))
    if "sweep_config" in payload:  # remote: composed by the launcher (config files stay home)
        sweep_config = payload["sweep_config"]
    else:  # composed here, as the joblib and submitit launchers do: in parallel
        _uncopied_repository(hydra_context.config_loader)
        if warm is not None:
            sweep_config = warm.compose.load_sweep_config(
                hydra_context.config_loader, payload["config"], job["overrides"], _sweep(parts)
            )
        else:
            sweep_config = hydra_context.config_loader.load_sweep_config(
                payload["config"], list(job["overrides"])
            )
    with read_write(sweep_config.hydra), open_dict(sweep_config):
        sweep_config.hydra.job.id = job["job_id"]
        sweep_config.hydra.job.num = job["num"]
    if sweep_dir is not None:
        with read_write(sweep_config.hydra.sweep):
            sweep_config.hydra.sweep.dir = sweep_dir
        with read_write(sweep_config.hydra.runtime):  # get_original_cwd(): the uploaded code
            sweep_config.hydra.runtime.cwd = os.getcwd()
    # run_job makes sweep_config Hydra's config (HydraConfig.set_config) before anything reads it
    result = run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=_checked(
            load_task_function(payload.get("task_reference"), parts["task_function"]), guard
        ),
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if result.status == JobStatus.FAILED:
        result.return_value = portable_error(result._return_value)
    result_path = result_path or result_path_for(spec_path)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(result_path, cloudpickle.dumps(result))
    hold_until_collected(result_path, hold_seconds)
    return 0 if result.status == JobStatus.COMPLETED else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m ..._job_runner SPEC [RESULT SWEEP_DIR [HOLD_SECONDS]]
    [--attempt JSON]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    attempt = None
    if "--attempt" in args[:-1]:
        at = args.index("--attempt")
        attempt = args[at + 1]
        del args[at : at + 2]
    if len(args) not in (1, 3, 4):
        print(
            "usage: python -m hydra_plugins.hydraflow_plugins._job_runner "
            "SPEC [RESULT SWEEP_DIR [HOLD_SECONDS]] [--attempt JSON]"
        )
        return 2
    if len(args) >= 3:
        hold = float(args[3]) if len(args) == 4 else 0
        return run(Path(args[0]), Path(args[1]), args[2], hold_seconds=hold, attempt=attempt)
    return run(Path(args[0]), attempt=attempt)


_FINAL_COLLECTIONS_SKIPPED = False


def skip_final_collections() -> None:
    """Make this process skip Python's last garbage collections when it exits (registered once).

    A sweep's launching process ends soon after its sweep: the collections over every object of
    Hydra, MLflow and Optuna took 0.7-1.1 s of its exit (load 5-6, 2 cores) against 0.1 s with
    them frozen first (``gc.freeze``). The handler runs first at exit (atexit is last in, first
    out) and only then; objects in reference cycles are then not finalized at exit, which Python
    never promises (atexit handlers, e.g. logging's flush, still run).
    """
    global _FINAL_COLLECTIONS_SKIPPED
    if not _FINAL_COLLECTIONS_SKIPPED:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _FINAL_COLLECTIONS_SKIPPED = True


# the threads of MLflow's asynchronous logging queue (mlflow.utils.async_logging)
_ASYNC_LOGGING_THREADS = ("MLflowAsyncLogging", "MLflowBatchLogging")


def flush_mlflow_async_logging() -> None:
    """Flush what the job logged with ``synchronous=False``, if it did: only then do MLflow's
    logging threads run. (``mlflow.flush_async_logging`` opens the tracking store: for a job that
    never logged, it would make, and migrate, an ``mlflow.db`` in the working folder.)"""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    import threading

    if any(t.name.startswith(_ASYNC_LOGGING_THREADS) for t in threading.enumerate()):
        mlflow.flush_async_logging()


def exit_now(status: int) -> NoReturn:
    """End this task process at once: the job's result is written, its records ended.

    The interpreter's own teardown (finalizing every module mlflow, SQLAlchemy and the user's code
    imported) takes seconds per job on a busy machine, for nothing the job needs; as multiprocessing
    does for its children, log handlers, standard streams and MLflow's asynchronous logging are
    flushed and the process exits without it. Files a job left open without closing them are not
    flushed: close them (``with open(...)``).
    """
    import logging

    try:
        flush_mlflow_async_logging()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


if __name__ == "__main__":
    exit_now(main())
