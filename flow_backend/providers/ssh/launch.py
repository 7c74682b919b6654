"""Starting the nodes of a placed task on their hosts: code upload, environment, detached run."""

from __future__ import annotations

import socket
from pathlib import Path, PurePosixPath

from flow_backend.providers.ssh.hosts import HostPool
from flow_backend.providers.ssh.state import NodePlacement, SSHTaskState
from flow_backend.remote import parse_destination, start_detached, stop, upload_code

__all__ = ["main_ip", "node_env", "plan_nodes", "start_nodes", "stop_nodes"]


def main_ip(host: str) -> str:
    """The address of rank 0 as this machine resolves it (the host name when it cannot)."""
    name = parse_destination(host).host
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def plan_nodes(
    state: SSHTaskState, chosen: list[tuple[str, list[str]]], pool: HostPool
) -> list[NodePlacement]:
    """Task folder and working folder of each node (the working folder is fixed at start)."""
    nodes = []
    for rank, (host, gpus) in enumerate(chosen):
        task_dir = f"{pool.root(host)}/tasks/{state.task_id}/{rank}"
        nodes.append(
            NodePlacement(rank=rank, host=host, task_dir=task_dir, workdir=task_dir, gpus=gpus)
        )
    return nodes


def node_env(state: SSHTaskState, node: NodePlacement, user_env: dict[str, str]) -> dict[str, str]:
    """The environment of one node: the task's own plus ``FLOW_*`` and ``CUDA_VISIBLE_DEVICES``."""
    env = dict(user_env)
    env.update(
        FLOW_TASK_ID=state.task_id,
        FLOW_TASK_NAME=state.record.name,
        FLOW_INSTANCE_TYPE=state.record.instance_type,
        FLOW_NODE_RANK=str(node.rank),
        FLOW_NUM_NODES=str(len(state.nodes)),
        FLOW_MAIN_IP=main_ip(state.nodes[0].host),
    )
    if node.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(node.gpus)
    return env


def _workdir(state: SSHTaskState, node: NodePlacement, code_dir: str | None) -> str:
    if code_dir is None:
        return state.working_dir or node.task_dir
    if state.working_dir and PurePosixPath(state.working_dir).is_absolute():
        return state.working_dir
    return str(PurePosixPath(code_dir) / (state.working_dir or "."))


def start_nodes(state: SSHTaskState, pool: HostPool, user_env: dict[str, str]) -> None:
    """Upload the code (once per host and version) and start every node; updates ``state.nodes``.

    Raises:
        FlowError: A node could not start (nodes already started are stopped first).
    """

    def start(node: NodePlacement) -> NodePlacement:
        conn = pool.conn(node.host)
        code_dir = None
        if state.upload_code and state.code_root:
            code_dir = upload_code(conn, Path(state.code_root), f"{pool.root(node.host)}/code").path
        workdir = _workdir(state, node, code_dir)
        start_detached(
            conn, node.task_dir, state.command, node_env(state, node, user_env), workdir=workdir
        )
        return node.model_copy(update={"workdir": workdir})

    def attempt(node: NodePlacement) -> NodePlacement | BaseException:
        try:
            return start(node)
        except Exception as error:  # collected, re-raised below once the others are stopped
            return error

    results = pool.each(state.nodes, attempt)
    errors = [result for result in results if isinstance(result, BaseException)]
    started = [result for result in results if isinstance(result, NodePlacement)]
    if errors:
        stop_nodes(started, pool, grace_seconds=0)
        raise errors[0]
    state.nodes = started


def stop_nodes(nodes: list[NodePlacement], pool: HostPool, *, grace_seconds: float) -> None:
    """Stop the process group of each node (TERM, then KILL after ``grace_seconds``)."""
    pool.each(
        nodes, lambda node: stop(pool.conn(node.host), node.task_dir, grace_seconds=grace_seconds)
    )
