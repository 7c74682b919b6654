"""Asynchronous search: ``flow_optuna`` against hydra-optuna-sweeper, same launcher, same seed.

Run: ``python benchmarks/async_search.py [--trials 24] [--jobs 4]``. Each way runs the app
``benchmarks/async_search_app.py`` (runtimes 1–6 s, deterministic per params; known minimum 0) as a
real multirun on the ``flow`` launcher (local provider, ``max_parallel = --jobs``) with the MLflow
callback (on an existing, empty store, as after a first sweep) and a TPE sampler seeded 0:

- ``optuna (batched)``: ``hydra/sweeper=optuna`` — asks ``n_jobs`` trials, waits for the slowest;
- ``flow_optuna``: ``hydra/sweeper=flow_optuna`` — a slot is refilled the moment its trial ends;
- ``flow_optuna + pruning``: the same, with ``prune_on=val_loss`` (median pruner).

It prints wall time of the whole command, split into ``lead`` (command start → first objective
start; in brackets when the sweeper submitted the first job), ``span`` (first objective start →
last end) and ``trail`` (→ the command's exit), and the slot-idle fraction. ``floor s`` is the wall
a scheduler with no overhead and no tail could reach for the same trials, ``lead + Σ objective
time / n_jobs + trail``; each way's floor is also printed as a ratio of the batched sweeper's
wall, which shows whether the issue's goal (wall ≤ 0.7× batched) can be met at all with these
runtimes (it may not be: for 24 runtimes drawn uniformly from 1–6 s, a list scheduler with no
overhead takes a median 0.76× the wall of a batched one with no overhead, and 0.7× or less in
about one draw in ten). A slot is busy only
while an objective runs: the app stamps its start as the objective function is entered (after the
worker took the order, Hydra composed the job's config and the MLflow callback started its run)
and its end at its last step (before it returns; the run's end and the result come after), so
every per-job cost of the sweeper, launcher, worker, Hydra and MLflow counts as idle. Idle is
1 - Σ objective time / (n_jobs × T), over the command's wall time (``idle/wall``: the start-up
before the first trial and the wrap-up after the last count) and over the trials' span
(``idle/span``). The span's idle is split by what the idle slots waited for (they add up):
``lead-in`` (until every slot has started a trial: workers starting), ``refill`` (until the last
trial starts: a slot between two trials while trials remained: the sweeper's and launcher's
overhead) and ``tail`` (after the last start: no trial left to run, which any scheduler of a fixed
trial budget leaves); ``w/o tail`` is idle/span minus the tail, and ``idle@0`` the idle/span the
same trials in the same order would leave with instant refills. Neither idle figure leaves the
tail out: the goal (idle ≤ 10%) is judged on them. It also prints compute spent on pruned
trials, the best value, the load average before and after (the machine is shared), then the
ratios against the batched sweeper. ``refill s`` is the
median time from an objective's end to the next objective's start. For ``flow_optuna`` it then
splits each refill (from the study journal's submission/end times) into: ``notice`` (objective end
→ the sweeper has the outcome: the job's wrap-up and the launcher's poll), ``sweeper`` (→ the next
trial is submitted: metric read, tell, ask, submit) and ``start`` (→ the next objective starts:
the launcher hands the job to a worker, the job composes its config and starts its MLflow run),
and, after a pruned trial, ``prune→next`` (its pruning → the next objective starts: the cancelled
job stops and its slot takes the next one), and prints the sweeper's own time per phase.
``--ways`` picks some of the ways; ``--repeat N`` runs each way N times (the ways taking
turns) and prints each figure's median (the machine is shared: single runs are noisy).

One seed says little about search quality, so it also runs the sweeper's search loop in memory
for ``--seeds`` TPE seeds (the app's objective and runtimes on a virtual clock), batched and
without a barrier, and prints the median best value of each. It asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

APP = Path(__file__).resolve().parent / "async_search_app.py"
sys.path.insert(0, str(APP.parent.parent / "tests" / "plugins"))  # optuna_fakes: a virtual clock


@dataclass
class Outcome:
    """What one way of searching measured."""

    wall: float
    span: float
    busy: float
    idle_wall: float
    idle_span: float
    idle_floor: float  # idle/span of the same trials with instant refills (the tail)
    idle_parts: dict[str, float]  # idle/span split into lead-in, refill and tail (_idle_parts)
    lead: float  # command start → first objective start
    first_submit: float  # command start → first job submitted (flow_optuna only, else nan)
    trail: float  # last objective end → command exit
    floor: float  # lead + Σ objective time / n_jobs + trail: the wall with no overhead, no tail
    trials: int
    pruned: int
    pruned_seconds: float
    best: float
    refill: float
    parts: dict[str, float]  # median seconds: notice, sweeper, start, pruned (flow_optuna only)
    sweeper_time: str  # the sweeper's "sweeper time:" log line (flow_optuna only)


def _journal(work: Path) -> dict[int, dict[str, Any]]:
    """Job num → its trial's journal entry (flow_optuna only; empty for the batched sweeper)."""
    entries: dict[int, dict[str, Any]] = {}
    for journal in work.glob("optuna/*.jsonl"):
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("kind") == "trial" and "job_num" in entry.get("user_attrs", {}):
                entries[int(entry["user_attrs"]["job_num"])] = entry
    return entries


def _idle_without_overhead(records: dict[int, dict[str, float]], slots: int) -> float:
    """The slot-idle fraction of the same trials, in job order, if every refill took no time:
    what is left is the tail (the last trials run while the other slots have nothing to do)."""
    free = [0.0] * slots
    for num in sorted(records):
        earliest = free.index(min(free))
        free[earliest] += records[num]["end"] - records[num]["start"]
    busy = sum(r["end"] - r["start"] for r in records.values())
    return 1.0 - busy / (slots * max(free))


def _idle_parts(records: dict[int, dict[str, float]], slots: int) -> dict[str, float]:
    """The span's idle slot-seconds, split by what the idle slots were waiting for, as fractions
    of ``slots × span``: ``lead-in`` (first objective start → every slot has started one: workers
    still starting), ``refill`` (→ the last objective start: a slot between two trials while
    trials remained to start: the sweeper's and launcher's overhead), ``tail`` (→ the last end:
    no trial left to start, inherent to a fixed trial budget). They add up to idle/span."""
    starts = sorted(r["start"] for r in records.values())
    first, last_start = starts[0], starts[-1]
    full = starts[min(slots, len(starts)) - 1]
    end = max(r["end"] for r in records.values())
    times = sorted({*starts, *(r["end"] for r in records.values())})
    idle = {"lead-in": 0.0, "refill": 0.0, "tail": 0.0}
    for a, b in itertools.pairwise(times):
        running = sum(r["start"] <= a < r["end"] for r in records.values())
        part = "lead-in" if b <= full else "refill" if b <= last_start else "tail"
        idle[part] += max(0, slots - running) * (b - a)
    return {k: v / (slots * (end - first)) for k, v in idle.items()}


def _refill_parts(
    records: dict[int, dict[str, float]], journal: dict[int, dict[str, Any]]
) -> dict[str, float]:
    """Median seconds of each part of a refill: objective end → outcome noticed → next job
    submitted → its objective started; and for a pruned trial, the pruning → the next objective
    started (``pruned``: the cancelled job stops, its worker takes the next one). Each ended job is
    paired with the first job submitted after the sweeper noticed it (the one that took its slot)."""
    submitted = sorted(
        (e["submitted_at"], num) for num, e in journal.items() if e.get("submitted_at")
    )
    parts: dict[str, list[float]] = {"notice": [], "sweeper": [], "start": [], "pruned": []}
    taken: set[int] = set()
    for num, entry in sorted(journal.items(), key=lambda item: item[1].get("ended_at") or 0):
        noticed = entry.get("ended_at")
        if noticed is None or num not in records:
            continue
        successor = next(((t, n) for t, n in submitted if t >= noticed and n not in taken), None)
        if successor is None or successor[1] not in records:
            continue
        taken.add(successor[1])
        if entry["state"] == "PRUNED":
            parts["pruned"].append(records[successor[1]]["start"] - noticed)
            continue
        parts["notice"].append(noticed - records[num]["end"])
        parts["sweeper"].append(successor[0] - noticed)
        parts["start"].append(records[successor[1]]["start"] - successor[0])
    return {k: statistics.median(v) for k, v in parts.items() if v}


class _InstantLauncher:
    """A launcher whose ``launch`` returns each job's value at once (for the batched search)."""

    def launch(self, batch: list[list[str]], initial_job_idx: int) -> list[Any]:
        from async_search_app import value
        from hydra.core.utils import JobReturn, JobStatus

        returns = []
        for overrides in batch:
            params = dict(o.split("=", 1) for o in overrides)
            ret = JobReturn()
            ret.status = JobStatus.COMPLETED
            ret.return_value = value(float(params["+x"]), float(params["+y"]))
            returns.append(ret)
        return returns


def best_values(seeds: int, trials: int, jobs: int) -> tuple[list[float], list[float]]:
    """The best value after ``trials`` trials for TPE seeds 0..seeds-1, batched (ask ``jobs``,
    tell them all) and without a barrier (a slot refilled as its trial ends, trials taking the
    app's runtimes on a virtual clock): the same search loop as the sweeper's, in memory."""
    import optuna
    from async_search_app import runtime, value
    from optuna_fakes import FakeSession

    from hydra_plugins.hydraflow_plugins._optuna_search import Search
    from hydra_plugins.hydraflow_plugins._optuna_session import BatchSession
    from hydra_plugins.hydraflow_plugins._optuna_space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.parse({"+x": "interval(-5,5)", "+y": "interval(-5,5)"}, [])
    config = OmegaConf.create({})
    bests: tuple[list[float], list[float]] = ([], [])
    for seed in range(seeds):
        for kind, found in zip(("batched", "async"), bests, strict=True):
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
            session: Any = (
                BatchSession(_InstantLauncher(), jobs)  # type: ignore[arg-type]
                if kind == "batched"
                else FakeSession(
                    slots=jobs,
                    duration=lambda p: runtime(p["+x"], p["+y"]),
                    result=lambda p: value(p["+x"], p["+y"]),
                )
            )
            with session:
                Search(study, session, partial(space.ask, study, config), trials).run()
            found.append(study.best_value)
    return bests


def run_way(root: Path, label: str, sweeper: list[str], args: argparse.Namespace) -> Outcome:
    """Run one sweep as a real multirun in its own folder, Flow home and MLflow store."""
    work = root / label.replace(" ", "_").replace("+", "p").replace("(", "").replace(")", "")
    timing = work / "timing"
    timing.mkdir(parents=True)
    shutil.copyfile(root.parent / "store-template.db", work / "mlflow.db")  # as after a sweep
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
    began = time.time()
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    finished = time.time()
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
    journal = _journal(work)
    pruned = [num for num, entry in journal.items() if entry["state"] == "PRUNED"]
    (results,) = work.glob("multirun/*/*/optimization_results.yaml")
    best = float(OmegaConf.load(results).best_value)
    said = [line for line in proc.stdout.splitlines() if "sweeper time:" in line]
    return Outcome(
        wall=wall,
        span=span,
        busy=busy,
        idle_wall=1.0 - busy / (args.jobs * wall),
        idle_span=1.0 - busy / (args.jobs * span),
        idle_floor=_idle_without_overhead(records, args.jobs),
        idle_parts=_idle_parts(records, args.jobs),
        lead=first - began,
        first_submit=min(
            (e["submitted_at"] for e in journal.values() if e.get("submitted_at")),
            default=math.nan,
        )
        - began,
        trail=finished - last,
        floor=(first - began) + busy / args.jobs + (finished - last),
        trials=len(records),
        pruned=len(pruned),
        pruned_seconds=sum(records[n]["end"] - records[n]["start"] for n in pruned if n in records),
        best=best,
        refill=statistics.median(gaps) if gaps else 0.0,
        parts=_refill_parts(records, journal),
        sweeper_time=said[-1].split("sweeper time:", 1)[1].strip() if said else "",
    )


WAYS = ("batched", "flow", "pruning")


def _median(runs: list[Outcome]) -> Outcome:
    """Each figure's median over the runs of one way (the sweeper's time line: the middle run's)."""
    if len(runs) == 1:
        return runs[0]
    fields: dict[str, Any] = {}
    for name in Outcome.__dataclass_fields__:
        values = [getattr(run, name) for run in runs]
        if name == "parts" or name == "idle_parts":
            keys = {k for value in values for k in value}
            fields[name] = {
                k: statistics.median(v[k] for v in values if k in v) for k in sorted(keys)
            }
        elif name == "sweeper_time":
            fields[name] = sorted(runs, key=lambda run: run.wall)[len(runs) // 2].sweeper_time
        else:
            fields[name] = statistics.median(values)
    return Outcome(**fields)


def _load() -> str:
    """The 1, 5 and 15-minute load averages (the machine is shared: figures depend on them)."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _table(title: str, *groups: tuple[str, ...]) -> Table:
    table = Table(title=title)
    table.add_column("way")
    for group in groups:
        for column in group:
            table.add_column(column, justify="right")
    return table


def main() -> None:
    """Run the ways and print the table, the refill breakdown and the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--step", type=float, default=0.5, help="seconds between val_loss logs")
    parser.add_argument("--ways", nargs="*", choices=WAYS, default=list(WAYS))
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the in-memory comparison")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each way (taking turns); medians printed"
    )
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
    ways = {
        label: way for (label, way), key in zip(ways.items(), WAYS, strict=True) if key in args.ways
    }
    outcomes: dict[str, Outcome] = {}
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="async-search-") as tmp:
        from mlflow.tracking import MlflowClient

        # Every way starts from the same empty, migrated MLflow store (creating one takes seconds).
        template = Path(tmp) / "store-template.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        runs: dict[str, list[Outcome]] = {label: [] for label in ways}
        for attempt in range(args.repeat):  # the ways take turns, so load drifts hit each alike
            for label, sweeper in ways.items():
                runs[label].append(run_way(Path(tmp) / str(attempt), label, sweeper, args))
        outcomes = {label: _median(found) for label, found in runs.items()}
    title = f"{args.trials} trials, n_jobs={args.jobs}, flow launcher (local), TPE seed 0"
    if args.repeat > 1:
        title += f", medians of {args.repeat} runs"
    times = _table(
        f"{title}: time and slot idle (idle/span = lead-in + refill + tail)",
        ("wall s", "floor s", "lead s", "span s", "trail s", "idle/wall", "idle/span"),
        ("lead-in", "refill", "tail", "w/o tail", "idle@0"),
    )
    parts = _table(
        f"{title}: refills (median s), pruning, best value",
        ("refill s", "notice", "sweeper", "start", "prune→next"),
        ("trials", "pruned", "pruned s", "best"),
    )
    for label, o in outcomes.items():
        times.add_row(
            label,
            f"{o.wall:.1f}",
            f"{o.floor:.1f}",
            f"{o.lead:.1f}"
            + (f" ({o.first_submit:.1f})" if not math.isnan(o.first_submit) else ""),
            f"{o.span:.1f}",
            f"{o.trail:.1f}",
            f"{o.idle_wall:.1%}",
            f"{o.idle_span:.1%}",
            *(f"{o.idle_parts[k]:.1%}" for k in ("lead-in", "refill", "tail")),
            f"{o.idle_span - o.idle_parts['tail']:.1%}",
            f"{o.idle_floor:.1%}",
        )
        parts.add_row(
            label,
            f"{o.refill:.3f}",
            *(
                f"{o.parts[k]:.3f}" if k in o.parts else "—"
                for k in ("notice", "sweeper", "start", "pruned")
            ),
            f"{o.trials:g}",
            f"{o.pruned:g}",
            f"{o.pruned_seconds:.1f}",
            f"{o.best:.3f}",
        )
    console = Console(width=160)
    console.print(times)
    console.print(parts)
    console.print(f"load average: before {load_before}; after {_load()} (2 cores, shared)")
    for label, o in outcomes.items():
        if o.sweeper_time:
            console.print(f"{label}: sweeper time: {o.sweeper_time}")
    if args.seeds:
        batched, unbarred = best_values(args.seeds, args.trials, args.jobs)
        wins = sum(a <= b for a, b in zip(unbarred, batched, strict=True))
        console.print(
            f"best value after {args.trials} trials, TPE seeds 0-{args.seeds - 1}, in memory: "
            f"batched median {statistics.median(batched):.3f}, without a barrier median "
            f"{statistics.median(unbarred):.3f}; as good or better in {wins} of {args.seeds} seeds"
        )
    base = outcomes.get("optuna (batched)")
    for label, o in outcomes.items():
        if base is None:
            break
        console.print(
            f"{label}: wall floor {o.floor:.1f} s (lead {o.lead:.1f} + Σ objective "
            f"{o.busy:.1f} / {args.jobs} + trail {o.trail:.1f}) = ×{o.floor / base.wall:.2f} of "
            f"the batched wall {base.wall:.1f} s (the issue's goal: ≤ ×0.70)"
        )
    for label, o in outcomes.items():
        if base is None or o is base:
            continue
        console.print(
            f"{label} / optuna (batched): wall ×{o.wall / base.wall:.2f}, "
            f"span ×{o.span / base.span:.2f}, idle/wall {o.idle_wall:.0%} vs "
            f"{base.idle_wall:.0%}, idle/span {o.idle_span:.0%} vs {base.idle_span:.0%}, "
            f"best {o.best:.3f} vs {base.best:.3f}"
        )


if __name__ == "__main__":
    main()
