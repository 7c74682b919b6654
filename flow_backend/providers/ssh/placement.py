"""Which hosts (and GPUs) a task gets: the first listed hosts with room, one CPU task per host.

A host runs at most one CPU-only task at a time, plus GPU tasks as long as it has free GPUs
(``nvidia-smi`` indices not held by another active task of this FLOW_HOME). The nodes of a
multi-node task go to distinct hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["HostUsage", "choose_hosts", "usage_of"]


@dataclass
class HostUsage:
    """What active tasks hold on one host."""

    cpu_tasks: int = 0
    gpus: set[str] = field(default_factory=set)


def usage_of(placements: Iterable[tuple[str, Sequence[str], bool]]) -> dict[str, HostUsage]:
    """Sum up ``(host, gpus, is_cpu_task)`` of the nodes of active tasks per host."""
    usage: dict[str, HostUsage] = {}
    for host, gpus, is_cpu_task in placements:
        entry = usage.setdefault(host, HostUsage())
        entry.gpus.update(gpus)
        entry.cpu_tasks += int(is_cpu_task)
    return usage


def choose_hosts(
    hosts: Sequence[str],
    host_gpus: dict[str, list[str]],
    usage: dict[str, HostUsage],
    *,
    num_nodes: int,
    gpus_per_node: int,
) -> list[tuple[str, list[str]]] | None:
    """Pick ``num_nodes`` distinct hosts with room, in the order the hosts are listed.

    Args:
        hosts: Candidate hosts in preference order.
        host_gpus: GPU indices of each host (empty: no GPUs).
        usage: What active tasks hold per host.
        num_nodes: Hosts needed.
        gpus_per_node: GPUs needed on each (0: a CPU task).

    Returns:
        ``(host, gpu indices)`` per node, or ``None`` when there is no room now.
    """
    chosen: list[tuple[str, list[str]]] = []
    for host in hosts:
        held = usage.get(host, HostUsage())
        if gpus_per_node == 0:
            if held.cpu_tasks == 0:
                chosen.append((host, []))
        else:
            free = [gpu for gpu in host_gpus.get(host, []) if gpu not in held.gpus]
            if len(free) >= gpus_per_node:
                chosen.append((host, free[:gpus_per_node]))
        if len(chosen) == num_nodes:
            return chosen
    return None
