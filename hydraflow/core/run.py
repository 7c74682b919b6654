"""One MLflow run: its info, typed params, latest metrics, tags, Hydra config and artifacts."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from hydraflow.conventions import parse_param_value
from hydraflow.core.errors import RunNotFoundError, RunSelectionError, UnknownKeyError, suggestion
from hydraflow.core.hydra_dirs import HydraFolder, folder_store, hydra_folder
from hydraflow.core.store import Store, open_store

if TYPE_CHECKING:
    import polars as pl
    from omegaconf import DictConfig


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
CONFIG_ARTIFACTS = (".hydra/config.yaml", "config.yaml")


@dataclass(frozen=True)
class RunInfo:
    """What MLflow knows about a run besides its data."""

    run_id: str
    run_name: str | None
    experiment_id: str
    experiment_name: str | None
    status: str
    start_time: datetime | None
    end_time: datetime | None
    artifact_uri: str | None


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


class Run:
    """A single run, read from a store. Build one with :meth:`load` or :meth:`create`."""

    def __init__(
        self,
        info: RunInfo,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        tracking_uri: str,
    ) -> None:
        self.info = info
        self.params: dict[str, Any] = dict(params)
        self.metrics: dict[str, float] = dict(metrics)
        self.tags: dict[str, str] = dict(tags)
        self.tracking_uri = tracking_uri

    def __repr__(self) -> str:
        return (
            f"Run(run_id={self.info.run_id!r}, run_name={self.info.run_name!r}, "
            f"experiment={self.info.experiment_name!r}, status={self.info.status!r})"
        )

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], **kwargs: Any
    ) -> Any:
        """A run from a run directory or run id; a :class:`RunCollection` from a list of them.

        Args:
            source: A Hydra job output folder (``multirun/<date>/<time>/<n>``, see
                :mod:`hydraflow.core.hydra_dirs`), ``mlruns/<exp>/<run_id>`` (file store), a run's
                artifact directory, a run id in the current store, or a list of these (a Hydra
                sweep folder in the list stands for all its runs).
            **kwargs: ``tracking_uri=`` for run ids (default: ``MLFLOW_TRACKING_URI``, else
                ``./mlflow.db``).

        Raises:
            RunNotFoundError: No run at that path or with that id.
        """
        from hydraflow.core.collection import RunCollection

        tracking_uri = kwargs.pop("tracking_uri", None)
        if kwargs:
            raise TypeError(f"Run.load got unexpected arguments: {', '.join(kwargs)}")
        if isinstance(source, (str, os.PathLike)):
            runs = RunCollection.from_sources([source], tracking_uri=tracking_uri)
            if len(runs) > 1:
                raise RunSelectionError(
                    f"{os.fspath(source)!r} holds {len(runs)} runs (a sweep folder): load them "
                    "with RunCollection.load(path) or Run.load([path])."
                )
            return runs[0]
        return RunCollection.from_sources(list(source), tracking_uri=tracking_uri)

    @classmethod
    def create(
        cls,
        cfg: Any = None,
        experiment: str | None = None,
        run_name: str | None = None,
        tracking_uri: str | None = None,
    ) -> Run:
        """Start a new MLflow run; params = the flattened config, artifact ``config.yaml``.

        The run becomes the active run (the :mod:`hydraflow.tracking` helpers log into it). Use it
        as a context manager to end it FINISHED, or FAILED when the block raises.
        """
        from hydraflow.core.create import create_run

        return create_run(cfg, experiment, run_name, tracking_uri)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from hydraflow.core.create import end_run

        end_run(self, "FAILED" if exc_type is not None else "FINISHED")

    # -- data -------------------------------------------------------------------------------
    @cached_property
    def store(self) -> Store:
        """The store this run was read from."""
        return open_store(self.tracking_uri)

    @cached_property
    def artifacts_dir(self) -> Path:
        """The run's artifact directory (downloaded to a temporary folder for remote stores)."""
        local = _local_path(self.info.artifact_uri)
        if local is not None:
            return local
        import mlflow

        target = tempfile.mkdtemp(prefix=f"hydraflow-{self.info.run_id[:8]}-")
        path = mlflow.artifacts.download_artifacts(
            run_id=self.info.run_id, tracking_uri=self.tracking_uri, dst_path=target
        )
        return Path(path)

    def _artifact(self, relative: str) -> Path | None:
        local = _local_path(self.info.artifact_uri)
        if local is not None:
            path = local / relative
            return path if path.is_file() else None
        from mlflow import MlflowClient

        try:
            target = tempfile.mkdtemp(prefix=f"hydraflow-{self.info.run_id[:8]}-")
            client = MlflowClient(self.tracking_uri)
            return Path(client.download_artifacts(self.info.run_id, relative, target))
        except Exception:  # absent artifact: MLflow raises several types
            return None

    @cached_property
    def cfg(self) -> DictConfig | None:
        """The Hydra config (``.hydra/config.yaml``, else ``config.yaml``) or ``None``; read lazily."""
        from omegaconf import DictConfig, OmegaConf

        for relative in CONFIG_ARTIFACTS:
            path = self._artifact(relative)
            if path is not None:
                loaded = OmegaConf.load(path)
                return loaded if isinstance(loaded, DictConfig) else None
        return None

    def metric_history(self, key: str) -> pl.DataFrame:
        """Every logged value of a metric: columns ``step``, ``timestamp`` (UTC), ``value``.

        Raises:
            UnknownKeyError: The run has no such metric.
        """
        from hydraflow.core.history import read_history

        name = key.removeprefix("metrics.")
        if name not in self.metrics:
            raise UnknownKeyError(
                f"run {self.info.run_id} has no metric {key!r}."
                + suggestion(name, list(self.metrics), "metrics")
            )
        return read_history(self.store, self.info.run_id, self.info.experiment_id, name)

    def get(self, key: str, default: Any = None) -> Any:
        """A value by key: bare = param; ``metrics.``/``tags.``/``params.``/``info.`` prefixes."""
        if key.startswith("metrics."):
            return self.metrics.get(key.removeprefix("metrics."), default)
        if key.startswith("tags."):
            return self.tags.get(key.removeprefix("tags."), default)
        if key.startswith("info."):
            return getattr(self.info, key.removeprefix("info."), default)
        return self.params.get(key.removeprefix("params."), default)


def looks_like_run_id(text: str) -> bool:
    """MLflow run ids are 32 lowercase hex characters."""
    return bool(_RUN_ID.match(text))


def locate(
    source: str | os.PathLike[str], tracking_uri: str | None
) -> tuple[Store, str | HydraFolder]:
    """The store and run id a run directory, artifact directory or run id points to; for a Hydra
    job or sweep folder, the store and the folder (its runs are found by their tags).

    Raises:
        RunNotFoundError: A path that does not exist or holds no run; text that is no run id.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        found = hydra_folder(path.absolute())
        if found is not None:
            return folder_store(found, tracking_uri), found
        for folder in (path, path.parent):
            if (folder / "meta.yaml").is_file() and (folder.parent / "meta.yaml").is_file():
                return open_store(folder.parent.parent), folder.name
        for part in reversed(path.resolve().parts):
            if looks_like_run_id(part):
                return open_store(tracking_uri), part
        raise RunNotFoundError(
            f"{text!r} is not a run directory: expected a Hydra job or sweep folder (with .hydra/ "
            "or multirun.yaml), mlruns/<experiment_id>/<run_id> (with meta.yaml) or a run's "
            "artifact directory."
        )
    if looks_like_run_id(text):
        return open_store(tracking_uri), text
    raise RunNotFoundError(
        f"{text!r} is neither an existing run directory nor a run id (32 hex characters). "
        "Check the path, or pass a run id from the current store."
    )


def run_from_row(row: Mapping[str, Any], raw: Mapping[str, Any], tracking_uri: str) -> Run:
    """A :class:`Run` from one row of the collection frame and its raw param text."""
    info = RunInfo(
        run_id=row["run_id"],
        run_name=row["run_name"],
        experiment_id=row["experiment_id"],
        experiment_name=row["experiment"],
        status=row["status"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        artifact_uri=row["artifact_uri"],
    )
    params = {
        k.removeprefix("params."): parse_param_value(v)
        for k, v in raw.items()
        if k.startswith("params.") and v is not None
    }
    metrics = {
        k.removeprefix("metrics."): v
        for k, v in row.items()
        if k.startswith("metrics.") and v is not None
    }
    tags = {
        k.removeprefix("tags."): v
        for k, v in row.items()
        if k.startswith("tags.") and v is not None
    }
    return Run(info, params, metrics, tags, tracking_uri)
