"""Log into the active MLflow run: the Hydra job's run (hydraflow callback) or ``Run.create``'s.

```python
from hydraflow.tracking import log_metric, log_artifact
log_metric("loss", 0.25)                      # steps counted per key: 0, 1, 2, ...
log_artifact("model.pt", "Model checkpoint")  # the description is kept in a tag
```

Outside any run these raise :class:`NoActiveRunError`; they never start a run silently. A process
started for a run (``MLFLOW_RUN_ID`` set, no run active) logs into that run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydraflow.conventions import TAG_KEY_PREFIX, flatten_config, sanitize_key
from hydraflow.core.errors import NoActiveRunError

__all__ = [
    "TAG_ARTIFACT_PREFIX",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
]

TAG_ARTIFACT_PREFIX = "hydraflow.artifact."  # hydraflow.artifact.<artifact path> = description

_steps: dict[tuple[str, str], int] = {}
_lock = threading.Lock()


def _run_id() -> str:
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        return str(active.info.run_id)
    env = os.environ.get("MLFLOW_RUN_ID")
    if env:
        return env
    raise NoActiveRunError(
        "no active MLflow run to log into. Call this inside a Hydra job run with the hydraflow "
        "callback, or inside `with Run.create(cfg=cfg, experiment=...):`."
    )


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _next_step(run_id: str, key: str, step: int | None) -> int:
    with _lock:
        chosen = _steps.get((run_id, key), 0) if step is None else step
        _steps[(run_id, key)] = max(_steps.get((run_id, key), 0), chosen + 1)
        return chosen


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log a metric value; without ``step``, steps count 0, 1, 2, ... per key in this run."""
    run_id = _run_id()
    _client().log_metric(run_id, key, float(value), step=_next_step(run_id, key, step))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log several metrics at once (each key counts its own steps when ``step`` is None)."""
    import time

    from mlflow.entities import Metric

    run_id = _run_id()
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, _next_step(run_id, k, step)) for k, v in metrics.items()]
    _client().log_batch(run_id, metrics=batch)


def log_param(key: str, value: Any) -> None:
    """Log one param (a dict or list value becomes JSON text, as in the flattened config)."""
    log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Log params; nested mappings are flattened with ``.``; invalid keys are sanitised reversibly."""
    from mlflow.entities import Param, RunTag

    run_id = _run_id()
    flat = flatten_config(dict(params))
    safe = {sanitize_key(k): v for k, v in flat.items()}
    marks = [RunTag(f"{TAG_KEY_PREFIX}{sanitize_key(k)}", k) for k in flat if sanitize_key(k) != k]
    _client().log_batch(run_id, params=[Param(k, v) for k, v in safe.items()], tags=marks)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run."""
    run_id = _run_id()  # before the client: a client alone creates an empty store
    _client().set_tag(run_id, key, str(value))


def log_artifact(path: str | os.PathLike[str], description: str | None = None) -> None:
    """Upload a file or directory as an artifact; ``description`` goes to tag
    ``hydraflow.artifact.<name>``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    run_id = _run_id()
    local = Path(path)
    if not local.exists():
        raise FileNotFoundError(f"log_artifact: {str(local)!r} does not exist.")
    client = _client()
    if local.is_dir():
        client.log_artifacts(run_id, str(local), artifact_path=local.name)
    else:
        client.log_artifact(run_id, str(local))
    if description is not None:
        client.set_tag(run_id, f"{TAG_ARTIFACT_PREFIX}{sanitize_key(local.name)}", description)
