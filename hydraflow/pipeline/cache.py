"""Cache keys, the lookup of a stage's finished run, and the lock that serialises equal stages.

A stage's cache key is a stable hash of its name, its config section, its function's code and its
upstream stages' keys. Two processes (e.g. two jobs of a Hydra sweep) computing the same key take
the same lock file, so the second one waits and then reuses the first one's record.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import inspect
import marshal
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hydraflow.conventions import TAG_CACHE_KEY, config_hash
from hydraflow.core.store import sqlite_database
from hydraflow.pipeline.errors import PipelineDefinitionError, PipelineError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

__all__ = [
    "TAG_RESULT",
    "cache_key",
    "code_fingerprint",
    "config_section",
    "find_finished_run",
    "lock_dir_for",
    "stage_lock",
]

TAG_RESULT = "hydraflow.result"  # "pickle" once the return value is stored: the run is reusable


def config_section(cfg: Any, key: str) -> tuple[Any, Any]:
    """The stage's config section: (value handed to the function, plain value for params/hash).

    A missing section is an empty config. The handed value is resolved and detached from ``cfg``.
    """
    if cfg is None:
        return OmegaConf.create({}), {}
    if not isinstance(cfg, DictConfig):
        if not (isinstance(cfg, Mapping) or dataclasses.is_dataclass(cfg)):
            raise PipelineDefinitionError(
                f"The pipeline config must be a mapping (DictConfig, dict or dataclass) with one "
                f"section per stage, got {type(cfg).__name__} {cfg!r:.80}"
            )
        cfg = OmegaConf.create(cfg)  # type: ignore[call-overload]
    try:
        node = OmegaConf.select(cfg, key, default=None)
        if node is None:
            return OmegaConf.create({}), {}
        if isinstance(node, (DictConfig, ListConfig)):
            plain = OmegaConf.to_container(node, resolve=True)
            return OmegaConf.create(plain), plain
    except OmegaConfBaseException as error:
        raise PipelineDefinitionError(
            f"Config section {key!r} cannot be resolved: {str(error).splitlines()[0]}"
        ) from None
    return node, node


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """Source text of the stage function (bytecode when the source is unavailable)."""
    extra = ""
    while isinstance(fn, functools.partial):
        extra += repr((fn.args, sorted(fn.keywords.items())))
        fn = fn.func
    target: Any = inspect.unwrap(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isclass(target)):
        target = type(target)  # a callable instance: its class's code
    try:
        return textwrap.dedent(inspect.getsource(target)) + extra
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is not None:
            return hashlib.sha256(marshal.dumps(code)).hexdigest() + extra
        return (
            f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}{extra}"
        )


def cache_key(name: str, section: Any, fingerprint: str, upstream_keys: Mapping[str, str]) -> str:
    """Stable hash of the stage's name, config section, code and upstream keys."""
    return config_hash(
        {
            "stage": name,
            "config": section,
            "code": fingerprint,
            "upstream": dict(sorted(upstream_keys.items())),
        }
    )


def find_finished_run(client: MlflowClient, experiment_id: str, key: str) -> Run | None:
    """The newest FINISHED run of the experiment whose stored result has this cache key."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{TAG_CACHE_KEY}` = '{key}' and tags.`{TAG_RESULT}` = 'pickle' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def lock_dir_for(tracking_uri: str) -> Path:
    """Where lock files live: beside a local store, else in the system's temp folder."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite" and sqlite_database(tracking_uri):
        return Path(sqlite_database(tracking_uri)).absolute().parent / ".hydraflow-locks"
    if parsed.scheme in ("", "file"):  # beside the store's folder: MLflow reads every entry in it
        root = Path(unquote(parsed.path) if parsed.scheme else tracking_uri).resolve()
        return root.parent / f".{root.name}.hydraflow-locks"
    digest = hashlib.sha1(tracking_uri.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "hydraflow-locks" / digest


def make_lock_dir(lock_dir: Path) -> None:
    """Create ``lock_dir`` holding a ``.gitignore`` of ``*``: git and the code upload of remote
    sweeps (which reads every folder's ``.gitignore``) then leave the lock files out."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    ignore = lock_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# made by hydraflow pipelines: lock files, never committed\n*\n")


@contextmanager
def stage_lock(
    lock_dir: Path,
    name: str,
    cancel: threading.Event | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_dir/name.lock`` (released on exit, or if the process dies).

    Args:
        lock_dir: Folder of the lock files.
        name: The lock's name (a cache key).
        cancel: When set while waiting, stop waiting and raise :class:`PipelineError`.
        on_wait: Called once if the lock is held by someone else.
    """
    make_lock_dir(lock_dir)
    with open(lock_dir / f"{name}.lock", "a+b") as handle:
        if cancel is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            waited = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited and on_wait is not None:
                        on_wait()
                    waited = True
                    if cancel.wait(0.1):
                        raise PipelineError(
                            "Interrupted while another process held the lock of cache key "
                            f"{name[:12]}"
                        ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
