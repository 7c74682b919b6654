"""Per-task overhead of the local provider: 50 short tasks through Flow vs bare subprocess.

Run: ``python benchmarks/local_tasks.py [--tasks 50] [--repeats 3]``. Prints a table and the ratio of
the per-task wall time through ``Flow`` (submit + wait, state on disk) to bare ``subprocess.Popen``
of the same shell command (``sh -c``, start + wait). Each way is run ``--repeats`` times, interleaved,
and the best run counts (the machine's other load only ever adds time). It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flow_backend import Flow

COMMAND = "echo task $FLOW_NODE_RANK"


def bare(count: int, log_dir: Path) -> float:
    """Start ``count`` commands with subprocess (output to a file each), then wait for all."""
    start = time.perf_counter()
    children = []
    for index in range(count):
        with open(log_dir / f"bare-{index}.log", "wb") as log:
            children.append(
                subprocess.Popen(
                    ["/bin/sh", "-c", COMMAND],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=dict(os.environ, FLOW_NODE_RANK="0"),
                    start_new_session=True,
                )
            )
    for child in children:
        child.wait()
    return time.perf_counter() - start


def through_flow(count: int, home: Path) -> float:
    """Submit ``count`` tasks through Flow, then wait for all of them."""
    with Flow(home=home, provider="local") as client:
        start = time.perf_counter()
        tasks = [client.run(COMMAND, name=f"bench-{index}") for index in range(count)]
        for task in tasks:
            task.wait()
        elapsed = time.perf_counter() - start
        assert all(task.status == "completed" for task in tasks), "a benchmark task failed"
    return elapsed


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bare_times, flow_times = [], []
    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        root = Path(tmp)
        os.environ["FLOW_CONFIG_PATH"] = str(root / "no-config.yaml")
        for repeat in range(args.repeats):
            bare_times.append(bare(args.tasks, root))
            flow_times.append(through_flow(args.tasks, root / f"home-{repeat}"))
    bare_ms = min(bare_times) / args.tasks * 1000
    flow_ms = min(flow_times) / args.tasks * 1000
    table = Table(title=f"{args.tasks} short tasks ({COMMAND!r}), best of {args.repeats} runs")
    table.add_column("way")
    table.add_column("total s", justify="right")
    table.add_column("per task ms", justify="right")
    table.add_row("bare subprocess", f"{min(bare_times):.3f}", f"{bare_ms:.2f}")
    table.add_row("Flow (local)", f"{min(flow_times):.3f}", f"{flow_ms:.2f}")
    console = Console()
    console.print(table)
    console.print(f"per-task overhead ratio Flow / bare: {flow_ms / bare_ms:.2f}x (aim < 1.5x)")


if __name__ == "__main__":
    main()
