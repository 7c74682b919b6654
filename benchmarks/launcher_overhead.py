"""Launcher overhead: the same sweeps on Hydra's launchers and on ``flow`` with and without workers.

    python benchmarks/launcher_overhead.py [--jobs 16] [--parallel 2] [--repeat 1]

Two measurements, each launcher run as a fresh ``python app.py -m`` process in its own folder,
interleaved round by round so that load drifts hit every launcher alike:

1. a ``--jobs``-job sweep of a no-op app at parallelism ``--parallel``: ``basic`` (sequential, in
   process), ``joblib`` (hydra-joblib-launcher, loky processes), ``flow`` with warm workers (the
   default) and ``flow`` with one task per job (``reuse_workers=false``); ratio to joblib;
2. the README's demo, ``examples/train.py -m lr=1e-3,1e-4`` with the MLflow callback (a fresh sqlite
   store each time), on the basic launcher and on ``flow`` (both settings); ratio to basic.

Per-job overhead is the wall time above the basic launcher's, per job; ``cpu s`` is the CPU time
(user + system) of the whole process tree (the launcher and every process it waited for: workers,
loky processes, tasks), whatever the machine's load. ``round ratio`` is the median
over rounds of each round's own ratio (the launchers of one round run back to back, so a load that
drifts between rounds cancels out); the machine's load average is printed before and after. It never
asserts a time: machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NOOP_APP = """
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def noop(cfg: DictConfig) -> int:
    return 0


if __name__ == "__main__":
    noop()
"""


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str], workdir: Path, cpu: list[float]) -> float:
    """The wall time of ``command``; its process tree's CPU time is appended to ``cpu``."""
    env = dict(os.environ, FLOW_HOME=str(workdir / "flow-home"), FLOW_PROVIDER="local")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    cpu_before = _cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    cpu.append(_cpu_of_children() - cpu_before)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def _table(
    title: str, times: dict[str, list[float]], cpu: dict[str, list[float]], base: str, jobs: int
) -> None:
    reference = statistics.median(times[base])
    basic = statistics.median(times["basic"])
    print(title)
    print(
        f"{'launcher':<14}{'wall s':>9}{'per job s':>11}{'overhead/job s':>16}{f'vs {base}':>11}"
        f"{'round ratio':>13}{'cpu s':>8}   runs s"
    )
    for name, values in times.items():
        wall = statistics.median(values)
        overhead = (wall - basic) / jobs
        per_round = statistics.median(v / r for v, r in zip(values, times[base], strict=True))
        runs = " ".join(f"{v:.1f}" for v in values)
        print(
            f"{name:<14}{wall:>9.2f}{wall / jobs:>11.3f}{overhead:>16.3f}{wall / reference:>10.2f}x"
            f"{per_round:>12.2f}x{statistics.median(cpu[name]):>8.2f}   {runs}"
        )
    print()


def main() -> None:
    """Run both comparisons and print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=["noop", "demo"], help="run one measurement only")
    args = parser.parse_args()
    par = args.parallel
    noop_launchers = {
        "basic": ["hydra/launcher=basic"],
        "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={par}"],
        "flow workers": ["hydra/launcher=flow", f"hydra.launcher.max_parallel={par}"],
        "flow per-task": [
            "hydra/launcher=flow",
            f"hydra.launcher.max_parallel={par}",
            "hydra.launcher.reuse_workers=false",
        ],
    }
    demo_launchers = {
        "basic": ["hydra/launcher=basic"],
        "flow workers": ["hydra/launcher=flow", f"hydra.launcher.max_parallel={par}"],
        "flow per-task": [
            "hydra/launcher=flow",
            f"hydra.launcher.max_parallel={par}",
            "hydra.launcher.reuse_workers=false",
        ],
    }
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    noop: dict[str, list[float]] = {name: [] for name in noop_launchers}
    demo: dict[str, list[float]] = {name: [] for name in demo_launchers}
    noop_cpu: dict[str, list[float]] = {name: [] for name in noop_launchers}
    demo_cpu: dict[str, list[float]] = {name: [] for name in demo_launchers}
    with tempfile.TemporaryDirectory(prefix="launcher-overhead-") as tmp:
        root = Path(tmp)
        app = root / "noop_app.py"
        app.write_text(NOOP_APP)
        for round_ in range(args.repeat):
            for name, launcher_args in noop_launchers.items() if args.only != "demo" else ():
                workdir = root / f"noop-{name.replace(' ', '-')}-{round_}"
                workdir.mkdir()
                command = [sys.executable, str(app), "-m", f"+x=range({args.jobs})"]
                command += ["hydra/job_logging=disabled", *launcher_args]
                noop[name].append(_run(command, workdir, noop_cpu[name]))
            for name, launcher_args in demo_launchers.items() if args.only != "noop" else ():
                workdir = root / f"demo-{name.replace(' ', '-')}-{round_}"
                shutil.copytree(REPO / "examples", workdir)
                command = [sys.executable, "train.py", "-m", "lr=1e-3,1e-4", *launcher_args]
                demo[name].append(_run(command, workdir, demo_cpu[name]))
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    if args.only != "demo":
        _table(
            f"{args.jobs}-job no-op sweep, parallelism {par}, median of {args.repeat} run(s), "
            "wall time of the whole `python app.py -m` process",
            noop,
            noop_cpu,
            "joblib",
            args.jobs,
        )
    if args.only != "noop":
        _table(
            f"README demo (examples/train.py -m lr=1e-3,1e-4, MLflow callback, fresh sqlite store), "
            f"parallelism {par}, median of {args.repeat} run(s)",
            demo,
            demo_cpu,
            "basic",
            2,
        )


if __name__ == "__main__":
    main()
