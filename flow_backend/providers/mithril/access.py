"""Reaching a running Mithril task: its log (live or collected), a shell, its files.

A mixin of :class:`~flow_backend.providers.mithril.provider.MithrilProvider`, which supplies the
task lookups and the SSH operations it names below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flow_backend.errors import FlowError, ResourceNotFoundError
from flow_backend.providers.mithril.lookup import instances_for
from flow_backend.providers.mithril.records import node_views
from flow_backend.remote import (
    TaskHost,
    follow_logs,
    interactive_shell,
    parse_destination,
    run_shell,
    ssh_command_line,
    tail_logs,
)
from flow_backend.remote import download as remote_download

if TYPE_CHECKING:
    from flow_backend.models import TaskRecord
    from flow_backend.providers.mithril.account import Account
    from flow_backend.providers.mithril.api import Bid, MithrilClient
    from flow_backend.providers.mithril.nodes import NodeOps, NodeView
    from flow_backend.providers.mithril.task_store import TaskStore
    from flow_backend.settings import FlowSettings

__all__ = ["TaskAccess"]

logger = logging.getLogger(__name__)


class TaskAccess:
    """Logs, shell and downloads of Mithril tasks (mixed into the provider)."""

    client: MithrilClient
    account: Account
    store: TaskStore
    settings: FlowSettings
    ssh_user: str

    @property
    def nodes(self) -> NodeOps:  # pragma: no cover - the provider's
        raise NotImplementedError

    def get(self, task_id: str) -> TaskRecord:  # pragma: no cover - the provider's
        raise NotImplementedError

    def _find_bids(self, task_ids: list[str]) -> dict[str, Bid]:  # pragma: no cover
        raise NotImplementedError

    def _main_node(self, task_id: str) -> NodeView | None:
        bid = self._find_bids([task_id]).get(task_id)
        if bid is None:  # placed moments ago: the API does not show it yet
            return None
        instances = instances_for(self.client, self.account.project_fid, [bid])[bid.fid]
        nodes = node_views(bid, instances, self.ssh_user)
        if not nodes:
            return None
        self.nodes.discover([(bid.name, nodes[:1])])
        return nodes[0]

    def logs(self, task_id: str, tail: int | None = None) -> str:
        """The task's output: from the instance while it runs, from the collected copy after."""
        saved = self.store.log(task_id)
        if saved is None:
            if not self.get(task_id).status.is_terminal:  # get() also starts nodes
                node = self._main_node(task_id)
                if node is None or node.node_dir is None:
                    return ""
                return tail_logs(self.nodes.conn(node.destination), node.node_dir, tail)
            saved = self.store.log(task_id)  # get() brought the log home if the task just ended
        if saved is None:
            return ""
        if tail is None:
            return saved
        lines = saved.splitlines(keepends=True)
        return "".join(lines[-tail:]) if tail > 0 else ""

    def follow_logs(self, task_id: str) -> Iterator[str]:
        """Stream the log until the task ends. A dropped connection (the instance preempted, a
        network blip) is not an error: polling resumes, lines already sent are not sent again,
        and the poll that sees the end collects the task and cancels its bid."""
        sent = 0
        while True:
            record = self.get(task_id)
            if record.status.is_terminal:
                yield from self.logs(task_id).splitlines(keepends=True)[sent:]
                return
            node = self._main_node(task_id) if record.status.value == "running" else None
            if node is not None and node.node_dir is not None:
                seen = 0
                try:
                    for line in follow_logs(self.nodes.conn(node.destination), node.node_dir):
                        seen += 1
                        if seen > sent:
                            sent = seen
                            yield line
                except FlowError as error:
                    logger.info("lost the log stream of %s (%s); polling", task_id, error)
                else:
                    self.get(task_id)  # collects the results and cancels the bid
                    return
            time.sleep(self.settings.poll_interval)

    def _require_node(self, task_id: str) -> NodeView:
        node = self._main_node(task_id)
        if node is None or node.node_dir is None:
            raise ResourceNotFoundError(
                f"task {task_id!r} has no running instance to reach",
                field="task_id",
                value=task_id,
                hint="Wait until `flow status` shows it running; ended tasks keep only their log",
            )
        return node

    def shell(self, task_id: str, command: str | None = None) -> str:
        node = self._require_node(task_id)
        if command is None:
            cwd = self.nodes.workdir(node)
            interactive_shell(
                parse_destination(node.destination, field="ssh_destination"),
                self.account.key_path,
                cwd=cwd,
            )
            return ""
        cwd = self.nodes.workdir(node)
        return run_shell(self.nodes.conn(node.destination), command, cwd=cwd)

    def task_host(self, task_id: str) -> TaskHost | None:
        """Rank 0's instance (its pooled connection) and working folder, once it runs."""
        node = self._main_node(task_id)
        if node is None or node.node_dir is None:
            return None
        return TaskHost(
            node.destination, self.nodes.conn(node.destination), self.nodes.workdir(node)
        )

    def shell_command(self, task_id: str) -> str | None:
        record = self.get(task_id)
        if record.ssh_destination is None or record.status.is_terminal:
            return None
        return ssh_command_line(
            parse_destination(record.ssh_destination, field="ssh_destination"),
            self.account.key_path,
        )

    def download(self, task_id: str, remote_path: str, local_path: Path) -> None:
        """Copy a file or folder of the running task (relative paths: from its working folder)."""
        node = self._require_node(task_id)
        if not remote_path.startswith(("/", "~/")):
            remote_path = f"{self.nodes.workdir(node)}/{remote_path}"
        remote_download(self.nodes.conn(node.destination), remote_path, local_path)
