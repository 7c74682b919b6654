"""Tasks waiting for GPUs: their config on disk without secret values, those in memory only.

A waiting task's config is written to ``<task_id>.config.json`` so that any process can start it
once GPUs free up. Values of secret-looking environment variables
(:func:`flow_backend.secret_env.is_secret_name`) are left out of that file and stay in the memory
of the submitting process, so only that process can start such a task; if it exits first, the
task fails with a message to submit it again.
"""

from __future__ import annotations

import os

from flow_backend.models import TaskStatus
from flow_backend.providers.local import processes
from flow_backend.providers.local.state import FinalState, TaskFiles, TaskSpec
from flow_backend.secret_env import PENDING_SECRETS, split_secret_env
from flow_backend.task_config import TaskConfig

__all__ = ["config_to_start", "forget", "orphaned", "park"]


def park(files: TaskFiles, spec: TaskSpec, config: TaskConfig, home_key: str) -> None:
    """Record a task that waits for GPUs (``spec`` gains the secret names and the owner)."""
    plain_env, secret_env = split_secret_env(config.env)
    spec.secret_env_names = sorted(secret_env)
    spec.owner_pid = os.getpid()
    if secret_env:
        PENDING_SECRETS.remember(home_key, spec.task_id, secret_env)
    files.write_config(config.model_copy(update={"env": plain_env}).model_dump_json())
    files.write_spec(spec)


def config_to_start(files: TaskFiles, spec: TaskSpec, home_key: str) -> TaskConfig | None:
    """The full config (secrets included), or ``None`` when this process cannot start the task."""
    data = files.read_config()
    if data is None:
        return None
    if spec.secret_env_names:
        held = PENDING_SECRETS.get(home_key, spec.task_id)
        if held is None:
            return None
        data["env"] = {**(data.get("env") or {}), **held}
    return TaskConfig.model_validate(data)


def orphaned(files: TaskFiles, spec: TaskSpec, home_key: str) -> FinalState | None:
    """The failure of a waiting task whose secrets died with the process that submitted it."""
    if not spec.secret_env_names or PENDING_SECRETS.get(home_key, spec.task_id) is not None:
        return None
    if spec.owner_pid is not None and processes.is_alive(spec.owner_pid):
        return None  # the submitter still holds them and will start it
    if not files.claim_start():  # another process is concluding (or cancelling) it
        return None
    names = ", ".join(spec.secret_env_names)
    final = FinalState(
        status=TaskStatus.FAILED,
        message="the process that submitted it ended before GPUs were free, and its secret "
        f"environment ({names}) is never stored; submit it again",
    )
    files.write_final(final)
    files.append_log(final.message or "")
    files.config_path.unlink(missing_ok=True)
    return final


def forget(spec: TaskSpec, home_key: str) -> None:
    """Drop the secrets held for a task that started or ended."""
    PENDING_SECRETS.forget(home_key, spec.task_id)
