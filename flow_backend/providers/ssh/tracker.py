"""Keeping the ssh provider's task states current: remote statuses in, final records out.

Also holds the secrets of waiting tasks: values of secret-looking environment variables are kept in
this process's memory only (never on disk) until their task starts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from flow_backend.errors import FlowError
from flow_backend.models import TaskStatus, utc_now
from flow_backend.providers.ssh.hosts import HostPool
from flow_backend.providers.ssh.launch import stop_nodes
from flow_backend.providers.ssh.outcome import derive_outcome
from flow_backend.providers.ssh.state import SSHTaskState, StateStore
from flow_backend.remote import RemoteStatus, read_statuses
from flow_backend.secret_env import PENDING_SECRETS

__all__ = ["TaskTracker", "owner_alive"]

_UNREACHABLE = "cannot reach "


def owner_alive(state: SSHTaskState) -> bool:
    """Whether the process that submitted the task may still be running (unknown counts as yes)."""
    if state.owner_host != socket.gethostname() or state.owner_pid == os.getpid():
        return True
    try:
        os.kill(state.owner_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TaskTracker:
    """Refresh and finish task states of one FLOW_HOME.

    Args:
        store: The state files.
        pool: Connections to the hosts.
        home_key: Resolved FLOW_HOME (key of the in-memory secrets).
        grace_seconds: TERM-to-KILL time when a task is stopped.
    """

    def __init__(
        self, store: StateStore, pool: HostPool, home_key: str, grace_seconds: float
    ) -> None:
        self.store = store
        self.pool = pool
        self.home_key = home_key
        self.grace_seconds = grace_seconds

    # -- secrets of waiting tasks --------------------------------------------------------------
    def remember_secrets(self, task_id: str, secrets: dict[str, str]) -> None:
        """Keep a waiting task's secret env values in memory until it starts."""
        PENDING_SECRETS.remember(self.home_key, task_id, secrets)

    def secrets_of(self, task_id: str) -> dict[str, str] | None:
        """The secret env values this process holds for the task, if any."""
        return PENDING_SECRETS.get(self.home_key, task_id)

    def can_start(self, state: SSHTaskState) -> bool:
        """Whether this process has everything needed to start the task."""
        return not state.secret_env_names or self.secrets_of(state.task_id) is not None

    def forget(self, task_id: str) -> None:
        """Drop the task's secrets and its waiting marker."""
        PENDING_SECRETS.forget(self.home_key, task_id)
        self.store.set_waiting(task_id, False)

    # -- records -------------------------------------------------------------------------------
    def finish(
        self,
        state: SSHTaskState,
        status: TaskStatus,
        *,
        exit_code: int | None = None,
        message: str | None = None,
    ) -> SSHTaskState:
        """Record a final status; returns what is stored (an earlier final state wins)."""
        state.record.status = status
        state.record.exit_code = exit_code
        state.record.message = message
        state.record.ended_at = state.record.ended_at or utc_now()
        self.forget(state.task_id)
        return self.store.save(state)

    def refresh(self, states: Sequence[SSHTaskState]) -> list[SSHTaskState]:
        """Bring non-terminal states up to date: one SSH round trip per host for all of them."""
        live = [s for s in states if not s.record.status.is_terminal]
        by_host: dict[str, list[str]] = {}
        for state in live:
            for node in state.nodes:
                by_host.setdefault(node.host, []).append(node.task_dir)
        results = self.pool.each(list(by_host.items()), self._statuses_of)
        seen: dict[tuple[str, str], RemoteStatus] = {}
        unreachable: dict[str, str] = {}
        for (host, _), result in zip(by_host.items(), results, strict=True):
            if isinstance(result, str):
                unreachable[host] = result
            else:
                seen.update({(host, d): status for d, status in result.items()})
        updated: dict[str, SSHTaskState] = {s.task_id: s for s in states}
        for state in live:
            updated[state.task_id] = self._update(state, seen, unreachable)
        return [updated[s.task_id] for s in states]

    def _statuses_of(self, item: tuple[str, list[str]]) -> dict[str, RemoteStatus] | str:
        host, task_dirs = item
        try:
            return read_statuses(self.pool.conn(host), task_dirs)
        except FlowError as error:
            return str(error)

    def _update(
        self,
        state: SSHTaskState,
        seen: dict[tuple[str, str], RemoteStatus],
        unreachable: dict[str, str],
    ) -> SSHTaskState:
        if not state.nodes:
            if not self.can_start(state) and not owner_alive(state):
                names = ", ".join(state.secret_env_names)
                return self.finish(
                    state,
                    TaskStatus.FAILED,
                    message="the process that submitted it ended before a host was free, and "
                    f"its secret environment ({names}) is never stored; submit it again",
                )
            return state
        down = [node.host for node in state.nodes if node.host in unreachable]
        if down:  # a network blip is no verdict: keep the status, say why it is stale
            state.record.message = f"{_UNREACHABLE}{down[0]}: {unreachable[down[0]]}"
            return self.store.save(state)
        remote = [seen[(node.host, node.task_dir)] for node in state.nodes]
        outcome = derive_outcome(state, remote, owner_alive=owner_alive(state))
        if outcome.ranks_to_stop:
            stop_nodes(
                [state.nodes[rank] for rank in outcome.ranks_to_stop], self.pool, grace_seconds=5
            )
        if outcome.status.is_terminal:
            return self.finish(
                state, outcome.status, exit_code=outcome.exit_code, message=outcome.message
            )
        if outcome.status is TaskStatus.RUNNING and self._over_time(state):
            stop_nodes(state.nodes, self.pool, grace_seconds=self.grace_seconds)
            return self.finish(
                state,
                TaskStatus.FAILED,
                message=f"stopped after max_run_time_hours={state.max_run_time_hours:g}",
            )
        stale_note = (state.record.message or "").startswith(_UNREACHABLE)
        if outcome.status is not state.record.status or stale_note:
            state.record.status = outcome.status
            if stale_note:
                state.record.message = None
            if outcome.status is TaskStatus.RUNNING and state.record.started_at is None:
                state.record.started_at = utc_now()
            return self.store.save(state)
        return state

    @staticmethod
    def _over_time(state: SSHTaskState) -> bool:
        limit, started = state.max_run_time_hours, state.record.started_at
        return bool(limit and started and (utc_now() - started).total_seconds() > limit * 3600)
