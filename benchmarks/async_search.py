"""Asynchronous search: ``flow_optuna`` against hydra-optuna-sweeper, same launcher, same seed.

Run: ``python benchmarks/async_search.py [--trials 24] [--jobs 4]``. Each way runs the app
``benchmarks/async_search_app.py`` (runtimes 1–6 s, deterministic per params; known minimum 0) as a
real multirun on the ``flow`` launcher (local provider, ``max_parallel = --jobs``) with the MLflow
callback and a TPE sampler seeded 0:

- ``optuna (batched)``: ``hydra/sweeper=optuna`` — asks ``n_jobs`` trials, waits for the slowest;
- ``flow_optuna``: ``hydra/sweeper=flow_optuna`` — a slot is refilled the moment its trial ends;
- ``flow_optuna + pruning``: the same, with ``prune_on=val_loss`` (median pruner).

It prints wall time of the whole command, the slot-idle fraction over the trials' span (1 - time
spent in objectives / (slots × span from the first objective start to the last end): a job's
process start-up counts as idle), compute spent on pruned trials, and the best value, then the
ratios against the batched sweeper. ``refill s`` is the median time from an objective's end to the
next objective's start (sweeper, launcher and job set-up). It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

APP = Path(__file__).resolve().parent / "async_search_app.py"


@dataclass
class Outcome:
    """What one way of searching measured."""

    wall: float
    span: float
    busy: float
    idle: float
    trials: int
    pruned: int
    pruned_seconds: float
    best: float
    refill: float


def _states(work: Path) -> dict[int, str]:
    """Job num → Optuna state, from flow_optuna's study journal (empty for the batched sweeper)."""
    states: dict[int, str] = {}
    for journal in work.glob("optuna/*.jsonl"):
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("kind") == "trial" and "job_num" in entry.get("user_attrs", {}):
                states[int(entry["user_attrs"]["job_num"])] = entry["state"]
    return states


def run_way(root: Path, label: str, sweeper: list[str], args: argparse.Namespace) -> Outcome:
    """Run one sweep as a real multirun in its own folder, Flow home and MLflow store."""
    work = root / label.replace(" ", "_").replace("+", "p").replace("(", "").replace(")", "")
    timing = work / "timing"
    timing.mkdir(parents=True)
    env = {
        **os.environ,
        "FLOW_HOME": str(work / "flow-home"),
        "FLOW_CONFIG_PATH": str(work / "no-config.yaml"),
        "FLOW_PROVIDER": "local",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
    }
    command = [
        sys.executable,
        str(APP),
        "-m",
        "hydra/launcher=flow",
        f"hydra.launcher.max_parallel={args.jobs}",
        "hydra/callbacks=mlflow",
        *sweeper,
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={args.jobs}",
        "hydra.sweeper.sampler.seed=0",
        "+x=interval(-5,5)",
        "+y=interval(-5,5)",
        f"+timing_dir={timing}",
        f"+step_seconds={args.step}",
        f"+log_steps={'prune_on' in ' '.join(sweeper)}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records = {int(p.stem): json.loads(p.read_text()) for p in timing.glob("*.json")}
    first = min(r["start"] for r in records.values())
    last = max(r["end"] for r in records.values())
    busy = sum(r["end"] - r["start"] for r in records.values())
    span = last - first
    ends = sorted(r["end"] for r in records.values())
    gaps = []  # each later start: seconds since the last objective end before it
    for r in records.values():
        before = [end for end in ends if end <= r["start"]]
        if before:
            gaps.append(r["start"] - before[-1])
    states = _states(work)
    pruned = [num for num, state in states.items() if state == "PRUNED"]
    (results,) = work.glob("multirun/*/*/optimization_results.yaml")
    best = float(OmegaConf.load(results).best_value)
    return Outcome(
        wall=wall,
        span=span,
        busy=busy,
        idle=1.0 - busy / (args.jobs * span),
        trials=len(records),
        pruned=len(pruned),
        pruned_seconds=sum(records[n]["end"] - records[n]["start"] for n in pruned if n in records),
        best=best,
        refill=statistics.median(gaps) if gaps else 0.0,
    )


def main() -> None:
    """Run the three ways and print the table and the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--step", type=float, default=0.5, help="seconds between val_loss logs")
    args = parser.parse_args()
    ways = {
        "optuna (batched)": ["hydra/sweeper=optuna"],
        "flow_optuna": ["hydra/sweeper=flow_optuna"],
        "flow_optuna + pruning": [
            "hydra/sweeper=flow_optuna",
            "hydra.sweeper.prune_on=val_loss",
            "hydra/sweeper/pruner=median",
            f"hydra.sweeper.pruner.n_startup_trials={args.jobs}",
        ],
    }
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="async-search-") as tmp:
        for label, sweeper in ways.items():
            outcomes[label] = run_way(Path(tmp), label, sweeper, args)
    table = Table(
        title=f"{args.trials} trials, n_jobs={args.jobs}, flow launcher (local), TPE seed 0"
    )
    columns = ("way", "wall s", "span s", "slot idle", "refill s", "trials", "pruned", "pruned s")
    for column in (*columns, "best"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for label, o in outcomes.items():
        table.add_row(
            label,
            f"{o.wall:.1f}",
            f"{o.span:.1f}",
            f"{o.idle:.0%}",
            f"{o.refill:.2f}",
            str(o.trials),
            str(o.pruned),
            f"{o.pruned_seconds:.1f}",
            f"{o.best:.3f}",
        )
    console = Console(width=120)
    console.print(table)
    base = outcomes["optuna (batched)"]
    for label in ("flow_optuna", "flow_optuna + pruning"):
        o = outcomes[label]
        console.print(
            f"{label} / optuna (batched): wall ×{o.wall / base.wall:.2f}, "
            f"span ×{o.span / base.span:.2f}, slot idle {o.idle:.0%} vs {base.idle:.0%}, "
            f"best {o.best:.3f} vs {base.best:.3f}"
        )


if __name__ == "__main__":
    main()
