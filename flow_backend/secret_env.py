"""Secret environment variables: which names count as secret, and where their values may live.

Values of secret-looking variables (``*API_KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ...)
are never written to disk. A task that has to wait before it starts keeps them in the memory of
the process that submitted it (:data:`PENDING_SECRETS`); only that process can start it.
"""

from __future__ import annotations

import re
import threading

__all__ = ["PENDING_SECRETS", "PendingSecrets", "is_secret_name", "split_secret_env"]

_SECRET_NAME = re.compile(
    r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_?KEY|ACCESS_?KEY", re.IGNORECASE
)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's value must never be written to disk."""
    return bool(_SECRET_NAME.search(name))


def split_secret_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``env`` into ``(plain, secret)`` by :func:`is_secret_name`."""
    plain = {key: value for key, value in env.items() if not is_secret_name(key)}
    secret = {key: value for key, value in env.items() if is_secret_name(key)}
    return plain, secret


class PendingSecrets:
    """Secret env values of waiting tasks, by (FLOW_HOME, task id), in this process's memory."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def remember(self, home_key: str, task_id: str, secrets: dict[str, str]) -> None:
        """Keep a waiting task's secret values until it starts."""
        with self._lock:
            self._values[(home_key, task_id)] = dict(secrets)

    def get(self, home_key: str, task_id: str) -> dict[str, str] | None:
        """The values this process holds for the task, if any."""
        with self._lock:
            return self._values.get((home_key, task_id))

    def forget(self, home_key: str, task_id: str) -> None:
        """Drop the task's values (it started or ended)."""
        with self._lock:
            self._values.pop((home_key, task_id), None)


#: The one store of this process, shared by every provider instance.
PENDING_SECRETS = PendingSecrets()
