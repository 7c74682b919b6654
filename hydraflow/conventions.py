"""The MLflow conventions that the Hydra callback writes and every reader relies on.

One module, shared by :mod:`hydraflow.callbacks`, :mod:`hydraflow.core` and the pipelines, so that the
names of tags, the way a config becomes params and the way params become typed values again cannot
drift apart. See ``DESIGN.md`` ("MLflow conventions").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_TASK_RESTARTS",
    "MAX_PARAM_VALUE_LENGTH",
    "TAG_CACHE_KEY",
    "TAG_CONFIG_HASH",
    "TAG_COST_PER_HOUR",
    "TAG_END_REASON",
    "TAG_ERROR",
    "TAG_INSTANCE_TYPE",
    "TAG_JOB_NUM",
    "TAG_KEY_PREFIX",
    "TAG_LAUNCHER",
    "TAG_OVERRIDES",
    "TAG_PARENT_RUN_ID",
    "TAG_PROVIDER",
    "TAG_RETURN_VALUE",
    "TAG_ROLE",
    "TAG_STAGE",
    "TAG_SWEEP_DIR",
    "TAG_SWEEP_ID",
    "TAG_SWEEP_KEY",
    "TAG_TASK_ID",
    "TAG_TOTAL_COST",
    "config_hash",
    "default_tracking_uri",
    "flatten_config",
    "parse_param_value",
    "resolve_tracking_uri",
    "return_value_metrics",
    "sanitize_key",
]

# -- tags ---------------------------------------------------------------------------------------
TAG_SWEEP_ID = "hydraflow.sweep_id"
TAG_JOB_NUM = "hydraflow.job_num"
TAG_OVERRIDES = "hydraflow.overrides"  # JSON list of the job's override strings
TAG_CONFIG_HASH = "hydraflow.config_hash"  # stable hash of the resolved job config (resume)
TAG_SWEEP_DIR = "hydraflow.sweep_dir"
TAG_ROLE = "hydraflow.role"  # "sweep" on the parent run, "job" on a child, "stage" in pipelines
TAG_KEY_PREFIX = "hydraflow.key."  # hydraflow.key.<sanitised param key> = original key
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_STAGE = "hydraflow.stage"  # a pipeline stage run: the stage's name
TAG_CACHE_KEY = "hydraflow.cache_key"  # a pipeline stage run: its cache key (re-execution)

TAG_TASK_ID = "flow.task_id"
TAG_PROVIDER = "flow.provider"
TAG_INSTANCE_TYPE = "flow.instance_type"
TAG_COST_PER_HOUR = "flow.cost_per_hour"
TAG_TOTAL_COST = "flow.total_cost"

# Written by the Hydra callback (additive, issue 3): a job's return value as JSON text when it is
# JSON and short enough (the flow sweeper's resume returns it), and a failed job's error.
TAG_RETURN_VALUE = "hydraflow.return_value"
TAG_ERROR = "hydraflow.error"

# Crash repair (issue 16): the parent run names the launching process ("host boot pid start"), so
# that a later reader can ask the OS whether the sweep's launcher still lives; a run ended by
# repair (KILLED) says why; a sweep's key (job name + command-line overrides) lets resume continue
# the parent run of the same sweep.
TAG_LAUNCHER = "hydraflow.launcher"
TAG_END_REASON = "hydraflow.end_reason"
TAG_SWEEP_KEY = "hydraflow.sweep_key"

# A job that runs again: how many times the task's scheduler restarted it (SLURM requeued it; the
# slurm provider sets it), or the flow launcher's attempt number (a retry of a job whose task died:
# ``sweep_context.TaskAttempt``, handed to the callback by the job runner, never an env var). When
# either is above 0 the callback replaces the run an earlier start left RUNNING: one run per job.
ENV_TASK_RESTARTS = "FLOW_TASK_RESTARTS"

# MLflow's own limits (mlflow.utils.validation): a longer param value is refused, never cut here.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
_VALID_KEY = re.compile(r"^[/\w.\- :]*$")
_INVALID_CHAR = re.compile(r"[^/\w.\- :]")


# -- params -------------------------------------------------------------------------------------
def _scalar_text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=False, default=str)
    return str(value)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a (resolved, plain) config into MLflow params.

    Nested mappings join their keys with ``.``; lists and tuples become JSON text; an empty mapping
    becomes ``"{}"``. Values are not truncated.

    Args:
        config: A plain mapping, e.g. ``OmegaConf.to_container(cfg, resolve=True)``.
        prefix: Key prefix used in recursion.

    Returns:
        ``{"model.type": "lstm", "lr": "0.001", "layers": "[64, 64]"}``
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, prefix=f"{full}."))
        elif isinstance(value, Mapping):
            flat[full] = "{}"
        else:
            flat[full] = _scalar_text(value)
    return flat


def _key_is_valid(key: str) -> bool:
    if not key or len(key) > MAX_KEY_LENGTH or not _VALID_KEY.match(key):
        return False
    return posixpath.normpath(key) == key and not key.startswith(("/", ".."))


def sanitize_key(key: str) -> str:
    """Return a key MLflow accepts; ``key`` itself when it already is one.

    Invalid characters become ``_``, a path-like key is flattened, and an over-long key is cut and
    suffixed with a hash so that two different keys never collide. The caller records the original in
    the tag ``hydraflow.key.<sanitised>`` so the mapping is reversible.
    """
    if _key_is_valid(key):
        return key
    safe = _INVALID_CHAR.sub("_", key).replace("//", "/_/").strip("/")
    while ".." in safe:
        safe = safe.replace("..", "._")
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    safe = f"{safe[: MAX_KEY_LENGTH - 10]}_{digest}" if safe else f"key_{digest}"
    return safe if _key_is_valid(safe) else f"key_{digest}"


_INT = re.compile(r"^[+-]?\d+$")


def parse_param_value(text: str | None) -> Any:
    """Type a param string back: ``"3"`` → 3, ``"0.1"`` → 0.1, ``"True"`` → True, ``"None"`` → None,
    JSON lists and objects → Python lists and dicts; anything else stays text."""
    if text is None:
        return None
    if text == "None" or text == "null":
        return None
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if _INT.match(text):
        return int(text)
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    try:
        number = float(text)
    except ValueError:
        return text
    return number if not math.isnan(number) or text.lower() == "nan" else text


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable hash of a resolved config: same config, same hash, in any process, on any machine."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# -- return values ------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def return_value_metrics(value: Any) -> dict[str, float] | None:
    """Metrics for a job's return value: a number → ``return_value``; a flat dict of numbers → one
    metric per key; anything else → ``None`` (the caller stores it as a JSON artifact)."""
    if _is_number(value):
        return {"return_value": float(value)}
    if isinstance(value, Mapping) and value and all(_is_number(v) for v in value.values()):
        return {sanitize_key(str(k)): float(v) for k, v in value.items()}
    return None


# -- the store ----------------------------------------------------------------------------------
def default_tracking_uri(directory: str | os.PathLike[str] | None = None) -> str:
    """MLflow's default store (``mlflow.db``), made absolute so a Hydra chdir cannot scatter it."""
    base = Path(directory) if directory is not None else Path.cwd()
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def resolve_tracking_uri(directory: str | os.PathLike[str] | None = None) -> str:
    """The user's ``MLFLOW_TRACKING_URI``, else :func:`default_tracking_uri` of ``directory``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(directory)


def artifact_location_for(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go: ``mlartifacts`` beside a sqlite store (absolute)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def overrides_tag(overrides: Iterable[str]) -> str:
    """The JSON text stored in ``hydraflow.overrides``."""
    return json.dumps(list(overrides))
