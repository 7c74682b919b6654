"""SLURM submission: one job array against one ``sbatch`` per task, on a real one-node cluster.

Run (as root, with ``slurm-wlm`` and ``munge`` installed): ``python benchmarks/slurm_submit.py
[--tasks 200] [--polls 5]``. Without ``--slurm-conf`` it starts the one-node cluster of
``flow slurm-cluster`` in a temporary folder and stops it at the end.

For N tasks (a 60 s ``sleep`` each, so they stay live while measured) it reports, side by side:

- ``array``: ``SlurmProvider.submit_array`` — one ``sbatch --array=0-N-1``;
- ``per task``: ``SlurmProvider.submit`` N times — one ``sbatch`` per task;

the wall time of the submission and the SLURM commands it ran, then per poll of all N live tasks
the commands and time of ``get_many`` (one ``squeue`` for all) against one ``get`` per task (one
``squeue`` each), then the cancellation until SLURM has ended every task: ``cancel_many`` (one
``scancel``, an array's elements as one ``123_[0-N]``, as Ctrl-C and ``flow cancel --sweep`` do)
against one ``scancel`` per task. It asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from flow_backend import TaskConfig
from flow_backend.providers.slurm import SlurmProvider
from flow_backend.providers.slurm.cluster import start_cluster
from flow_backend.settings import FlowSettings


def _timed(provider: SlurmProvider, action: Callable[[], object]) -> tuple[float, Counter[str]]:
    before = Counter(provider.login.calls)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start, provider.login.calls - before


def _commands(calls: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(calls.items())) or "none"


Row = tuple[str, float, Counter[str], float, Counter[str], float, Counter[str], float, Counter[str]]


def _cancel(provider: SlurmProvider, ids: list[str], at_once: bool) -> None:
    """Ask SLURM to cancel ``ids`` (one ``scancel`` for all, or one each); wait until all ended."""
    if at_once:
        provider.cancel_many(ids, wait=False)
    else:
        for task_id in ids:
            provider.cancel_many([task_id], wait=False)
    while not all(r.status.is_terminal for r in provider.get_many(ids).values()):
        time.sleep(0.1)


def _one_way(provider: SlurmProvider, configs: list[TaskConfig], label: str, polls: int) -> Row:
    """Submit ``configs`` one way, poll them both ways, cancel them; the row of the table."""
    ids: list[str] = []

    def submit() -> None:
        if label == "array":
            ids.extend(r.task_id for r in provider.submit_array(configs))
        else:
            ids.extend(provider.submit(config).task_id for config in configs)

    try:
        submit_time, submit_calls = _timed(provider, submit)
        many = [_timed(provider, lambda: provider.get_many(ids)) for _ in range(polls)]
        each = [_timed(provider, lambda: [provider.get(i) for i in ids]) for _ in range(polls)]
        cancel_time, cancel_calls = _timed(
            provider, lambda: _cancel(provider, ids, at_once=label == "array")
        )
    finally:
        provider.cancel_many(ids)
    return (
        label,
        submit_time,
        submit_calls,
        statistics.median(t for t, _ in many),
        many[0][1],
        statistics.median(t for t, _ in each),
        each[0][1],
        cancel_time,
        cancel_calls,
    )


def measure(conf: Path, home: Path, tasks: int, polls: int) -> None:
    """Print the table for ``tasks`` tasks on the cluster of ``conf``."""
    settings = FlowSettings(provider="slurm", home=home, slurm_conf=conf)
    provider = SlurmProvider(settings)
    configs = [
        TaskConfig(command=f"sleep 60 # {i}", upload_code=False, working_dir=str(home))
        for i in range(tasks)
    ]
    try:
        rows = [_one_way(provider, configs, label, polls) for label in ("array", "per task")]
    finally:
        live = [r.task_id for r in provider.list_tasks(active_only=True)]
        if live:
            provider.cancel_many(live)
    print(f"\n{tasks} tasks on a one-node SLURM cluster (median of {polls} polls)\n")
    header = (
        f"{'submission':<10} {'submit s':>9}  {'submit commands':<16} "
        f"{'poll all s':>10}  {'poll commands':<13} {'poll each s':>11}  {'each commands':<14} "
        f"{'cancel s':>8}  {'cancel commands'}"
    )
    print(header)
    print("-" * len(header))
    for label, st, sc, mt, mc, et, ec, ct, cc in rows:
        print(
            f"{label:<10} {st:>9.3f}  {_commands(sc):<16} {mt:>10.3f}  {_commands(mc):<13} "
            f"{et:>11.3f}  {_commands(ec):<14} {ct:>8.3f}  {_commands(cc)}"
        )
    array_time, each_time = rows[0][1], rows[1][1]
    print(
        f"\nsubmission: one array is {each_time / array_time:.1f}x faster than one sbatch per task"
    )
    poll_all, poll_each = rows[0][3], rows[0][5]
    print(f"poll: one squeue for all is {poll_each / poll_all:.1f}x faster than one per task")
    cancel_all, cancel_each = rows[0][7], rows[1][7]
    print(
        f"cancel: one scancel for all is {cancel_each / cancel_all:.1f}x faster than one per task "
        "(until SLURM has ended every task)"
    )


def main() -> None:
    """Parse the options, get a cluster, measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--slurm-conf", type=Path, default=None, help="an existing cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slurm-bench-") as folder:
        root = Path(folder)
        if args.slurm_conf is not None:
            measure(args.slurm_conf, root / "home", args.tasks, args.polls)
            return
        cluster = start_cluster(root / "cluster")
        try:
            measure(cluster.conf, root / "home", args.tasks, args.polls)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
