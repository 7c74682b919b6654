"""Per-task overhead of the local provider: 50 short tasks through Flow vs bare subprocess.

Run: ``python benchmarks/local_tasks.py [--tasks 50] [--repeats 5] [--command CMD]``. Prints a table
and the ratio of the per-task wall time through ``Flow`` (submit + wait; state on disk, exit-code
wrapper, own session) to bare ``subprocess.Popen(CMD, shell=True)`` with a log file each (start +
wait). Each way runs ``--repeats`` times, interleaved; the best run counts (other load on the machine
only ever adds time), and the CPU time (this process plus its children) is shown beside it, as it is
less disturbed by other load. It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flow_backend import Flow

DEFAULT_COMMAND = "echo task $FLOW_NODE_RANK"


def bare(count: int, log_dir: Path, command: str) -> None:
    """Start ``count`` commands the usual way (``shell=True``, output to a file each), wait for all."""
    children = []
    for index in range(count):
        with open(log_dir / f"bare-{index}.log", "wb") as log:
            children.append(
                subprocess.Popen(command, shell=True, stdout=log, stderr=subprocess.STDOUT)
            )
    for child in children:
        child.wait()


def through_flow(count: int, home: Path, command: str) -> None:
    """Submit ``count`` tasks through Flow, then wait for all of them."""
    with Flow(home=home, provider="local") as client:
        tasks = [client.run(command, name=f"bench-{index}") for index in range(count)]
        for task in tasks:
            task.wait()
        assert all(task.status == "completed" for task in tasks), "a benchmark task failed"


def _measure(action: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children) of ``action``."""
    before, start = os.times(), time.perf_counter()
    action()
    wall, after = time.perf_counter() - start, os.times()
    cpu = sum(after[:4]) - sum(before[:4])
    return wall, cpu


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--command", default=DEFAULT_COMMAND)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {"bare subprocess": [], "Flow (local)": []}
    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        root = Path(tmp)
        os.environ["FLOW_CONFIG_PATH"] = str(root / "no-config.yaml")
        for repeat in range(args.repeats):
            runs["bare subprocess"].append(_measure(lambda: bare(args.tasks, root, args.command)))
            home = root / f"home-{repeat}"
            runs["Flow (local)"].append(
                _measure(lambda home=home: through_flow(args.tasks, home, args.command))  # type: ignore[misc]
            )
    table = Table(title=f"{args.tasks} short tasks ({args.command!r}), best of {args.repeats} runs")
    for column in ("way", "total s", "wall ms/task", "CPU ms/task"):
        table.add_column(column, justify="left" if column == "way" else "right")
    per_task: dict[str, tuple[float, float]] = {}
    for way, measured in runs.items():
        wall = min(w for w, _ in measured) / args.tasks * 1000
        cpu = min(c for _, c in measured) / args.tasks * 1000
        per_task[way] = (wall, cpu)
        table.add_row(way, f"{wall * args.tasks / 1000:.3f}", f"{wall:.2f}", f"{cpu:.2f}")
    console = Console()
    console.print(table)
    (bare_wall, bare_cpu), (flow_wall, flow_cpu) = per_task.values()
    console.print(
        f"per-task ratio Flow / bare: wall {flow_wall / bare_wall:.2f}x (aim < 1.5x), "
        f"CPU {flow_cpu / bare_cpu:.2f}x; Flow adds {flow_wall - bare_wall:.2f} ms per task"
    )


if __name__ == "__main__":
    main()
