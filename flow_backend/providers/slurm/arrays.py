"""One batch of tasks as SLURM job arrays, within the cluster's ``MaxArraySize``.

An array's indices start at 0 and stay below ``MaxArraySize`` (SLURM's default is 1001; 0 turns
arrays off), so a batch of more tasks goes in as several arrays ("parts") of near-equal size, one
``sbatch`` each. The parts share ``max_parallel``: with at least as many parts running at once
allowed as there are parts, every part runs at once with its share as its ``%`` limit; with more
parts than that, they queue in ``max_parallel`` lanes, a part waiting for the one before it in its
lane (``--dependency=afterany``), so no more than ``max_parallel`` tasks ever run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from flow_backend.providers.slurm.login import Login

__all__ = ["DEFAULT_MAX_ARRAY_SIZE", "ArrayPart", "array_parts", "cluster_max_array_size"]

#: SLURM's ``MaxArraySize`` when ``slurm.conf`` does not set it.
DEFAULT_MAX_ARRAY_SIZE = 1001
_SETTING = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ArrayPart:
    """One ``sbatch`` of a batch.

    Attributes:
        indices: The batch's tasks in this part, in order (element ``i`` is task
            ``indices[i]``).
        limit: Its elements running at once (``%limit``); ``None``: no limit.
        after: The part (its place in the list) this one waits for; ``None``: none.
    """

    indices: range
    limit: int | None
    after: int | None


def array_parts(count: int, max_size: int, max_parallel: int | None) -> list[ArrayPart]:
    """``count`` tasks as arrays of at most ``max_size`` elements that together never run more
    than ``max_parallel`` tasks (see the module docstring); one part when they fit in one."""
    parts = max(1, math.ceil(count / max(1, max_size)))
    size, extra = divmod(count, parts)
    ranges, start = [], 0
    for number in range(parts):
        end = start + size + (1 if number < extra else 0)
        ranges.append(range(start, end))
        start = end
    if max_parallel is None:
        return [ArrayPart(indices, None, None) for indices in ranges]
    lanes = min(max_parallel, parts)
    shares = [
        max_parallel // lanes + (1 if lane < max_parallel % lanes else 0) for lane in range(lanes)
    ]
    return [
        ArrayPart(indices, shares[number % lanes], number - lanes if number >= lanes else None)
        for number, indices in enumerate(ranges)
    ]


def cluster_max_array_size(login: Login) -> int:
    """The cluster's ``MaxArraySize`` (``scontrol show config``; SLURM's default when it cannot be
    read), at least 1: with arrays turned off, each task is a job of its own."""
    result = login.slurm(["scontrol", "show", "config"])
    found = _SETTING.search(result.stdout) if result.exit_code == 0 else None
    return max(1, int(found.group(1))) if found else DEFAULT_MAX_ARRAY_SIZE
