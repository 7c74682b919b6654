"""Hydra's output folders → the MLflow runs the callback recorded for them.

A job folder (``multirun/<date>/<time>/<n>`` or ``outputs/<date>/<time>``, with ``.hydra/``) is the
run whose tag ``hydraflow.sweep_dir`` is its sweep folder and ``hydraflow.job_num`` its job number
(a single run: ``hydraflow.sweep_dir`` is the folder itself). A sweep folder (with
``multirun.yaml``) holds the job runs tagged with it. When a job ran more than once (a resumed or
repeated sweep), the newest run wins.

The store is ``tracking_uri`` when given, else ``MLFLOW_TRACKING_URI``, else the callback's
``tracking_uri`` in the folder's saved Hydra config, else ``mlflow.db`` in the launch directory
(``hydra.runtime.cwd``) — where the callback logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from hydraflow.conventions import TAG_JOB_NUM, TAG_ROLE, TAG_SWEEP_DIR, default_tracking_uri
from hydraflow.core.errors import RunNotFoundError
from hydraflow.core.store import Store, open_store

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class HydraFolder:
    """A Hydra output folder: a job's (``job_num`` set) or a sweep's (``job_num`` None)."""

    path: Path
    hydra: dict[str, Any]
    job_num: int | None

    @property
    def single_run(self) -> bool:
        """A job of ``python app.py`` without ``-m``: the folder is its own ``sweep_dir``."""
        return self.job_num is not None and self.hydra.get("mode") == "RUN"


def hydra_folder(path: Path) -> HydraFolder | None:
    """The Hydra folder at ``path``, or None when it is none (no ``.hydra/`` nor ``multirun.yaml``)."""
    job_config = path / ".hydra" / "hydra.yaml"
    if job_config.is_file():
        hydra = _read_hydra(job_config)
        num = (hydra.get("job") or {}).get("num")
        return HydraFolder(path, hydra, int(num) if isinstance(num, int) else 0)
    if (path / "multirun.yaml").is_file():
        return HydraFolder(path, _read_hydra(path / "multirun.yaml"), None)
    return None


def _read_hydra(file: Path) -> dict[str, Any]:
    try:
        data = yaml.load(file.read_text(), Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return {}
    hydra = data.get("hydra") if isinstance(data, dict) else None
    return hydra if isinstance(hydra, dict) else {}


def folder_store(folder: HydraFolder, tracking_uri: str | None) -> Store:
    """The store holding the folder's runs (see the module docstring for the order)."""
    if tracking_uri is not None:
        return open_store(tracking_uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return open_store(None)
    for callback in (folder.hydra.get("callbacks") or {}).values():
        if isinstance(callback, dict) and callback.get("tracking_uri"):
            return open_store(str(callback["tracking_uri"]))
    cwd = (folder.hydra.get("runtime") or {}).get("cwd")
    return open_store(default_tracking_uri(cwd) if cwd else None)


def _same_folder(values: pl.Series, target: Path) -> pl.Series:
    """Which tag values name ``target`` (compared after resolving links, value by value)."""
    wanted = os.path.realpath(target)
    names = {v: os.path.realpath(v) == wanted for v in values.unique().to_list() if v}
    return values.replace_strict(names, default=False, return_dtype=pl.Boolean)


def folder_run_ids(
    folder: HydraFolder, tags: pl.DataFrame, starts: pl.DataFrame, store_uri: str
) -> list[str]:
    """The run ids recorded for ``folder`` (in job order), from the store's long ``tags`` table
    (``run_id, key, value``) and ``starts`` (``run_id, start_time``).

    Raises:
        RunNotFoundError: No run of the store was recorded for the folder.
    """
    wide = (
        tags.filter(pl.col("key").is_in([TAG_SWEEP_DIR, TAG_JOB_NUM, TAG_ROLE]))
        .pivot(on="key", index="run_id", values="value", aggregate_function="first")
        .join(starts, on="run_id", how="left")
    )
    for column in (TAG_SWEEP_DIR, TAG_JOB_NUM, TAG_ROLE):
        if column not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    wide = wide.filter(pl.col(TAG_ROLE).fill_null("job") != "sweep")
    if folder.job_num is None or folder.single_run:
        chosen = wide.filter(_same_folder(wide[TAG_SWEEP_DIR], folder.path))
    else:
        chosen = wide.filter(
            _same_folder(wide[TAG_SWEEP_DIR], folder.path.parent)
            & (pl.col(TAG_JOB_NUM) == str(folder.job_num))
        )
    if chosen.height == 0:
        kind = "sweep" if folder.job_num is None else "job"
        raise RunNotFoundError(
            f"no MLflow run was recorded for the Hydra {kind} folder {str(folder.path)!r} in "
            f"{store_uri}. Was the MLflow callback on (hydra/callbacks=mlflow)? Else pass the store it "
            "logged into: tracking_uri=... / --tracking-uri, or MLFLOW_TRACKING_URI."
        )
    newest = (
        chosen.with_columns(pl.col(TAG_JOB_NUM).cast(pl.Int64, strict=False).alias("__num"))
        .sort("start_time", nulls_last=False)
        .unique("__num", keep="last", maintain_order=True)
        .sort("__num", "start_time")
    )
    return newest["run_id"].to_list()
