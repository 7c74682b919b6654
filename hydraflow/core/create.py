"""``Run.create``: a new MLflow run from a config, and ending it FINISHED or FAILED."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from hydraflow.conventions import (
    MAX_PARAM_VALUE_LENGTH,
    TAG_CONFIG_HASH,
    config_hash,
    flatten_config,
    parse_param_value,
    resolve_tracking_uri,
)
from hydraflow.core.errors import ConfigError

if TYPE_CHECKING:
    from hydraflow.core.run import Run


def config_container(cfg: Any) -> dict[str, Any]:
    """A plain, resolved dict from a DictConfig, mapping, dataclass or pydantic model."""
    from omegaconf import DictConfig, OmegaConf

    if cfg is None:
        return {}
    if hasattr(cfg, "model_dump"):
        cfg = cfg.model_dump(mode="json")
    elif dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = OmegaConf.structured(cfg)
    if not isinstance(cfg, DictConfig):
        if not isinstance(cfg, dict):
            raise ConfigError(
                f"cfg must be a DictConfig, dict, dataclass or pydantic model, not {type(cfg).__name__}."
            )
        cfg = OmegaConf.create(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def _params_and_tags(
    container: dict[str, Any], flat: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    from hydraflow._mlflow_store import params_and_key_tags

    params, key_tags, too_long = params_and_key_tags(flat)
    for key, value in too_long.items():
        raise ConfigError(
            f"config key {key!r} has a value of {len(value)} characters; MLflow params hold at "
            f"most {MAX_PARAM_VALUE_LENGTH}. Store it as an artifact instead."
        )
    return params, {TAG_CONFIG_HASH: config_hash(container), **key_tags}


def create_run(
    cfg: Any, experiment: str | None, run_name: str | None, tracking_uri: str | None
) -> Run:
    """Start the run (nested when another run is active), log params, tags and ``config.yaml``."""
    import mlflow
    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from hydraflow._mlflow_store import ensure_experiment, log_batches
    from hydraflow.core.run import Run, RunInfo

    container = config_container(cfg)
    flat = flatten_config(container)
    params, tags = _params_and_tags(container, flat)
    uri = tracking_uri or resolve_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default"
    experiment_id = ensure_experiment(client, name, uri, restore=False)
    active = mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, nested=mlflow.active_run() is not None
    )
    run_id = active.info.run_id
    log_batches(client, run_id, params=params, tags=tags)
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(container)), "config.yaml")
    fresh = client.get_run(run_id)
    info = RunInfo(
        run_id=run_id,
        run_name=fresh.info.run_name,
        experiment_id=experiment_id,
        experiment_name=name,
        status=fresh.info.status,
        start_time=_when(fresh.info.start_time),
        end_time=None,
        artifact_uri=fresh.info.artifact_uri,
    )
    return Run(
        info,
        {k: parse_param_value(v) for k, v in flat.items()},
        dict(fresh.data.metrics),
        dict(fresh.data.tags),
        uri,
    )


def _when(millis: int | None) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(millis / 1000, tz=UTC) if millis else None


def end_run(run: Run, status: str) -> None:
    """End ``run`` with ``status`` and refresh its info, metrics and tags from the store."""
    import mlflow
    from mlflow import MlflowClient

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run.info.run_id:
        mlflow.end_run(status=status)
    else:
        MlflowClient(run.tracking_uri).set_terminated(run.info.run_id, status=status)
    fresh = MlflowClient(run.tracking_uri).get_run(run.info.run_id)
    run.info = dataclasses.replace(
        run.info, status=fresh.info.status, end_time=_when(fresh.info.end_time)
    )
    run.metrics = dict(fresh.data.metrics)
    run.tags = dict(fresh.data.tags)
