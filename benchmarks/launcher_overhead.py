"""Launcher overhead: the same 16-job sweep of a no-op Hydra app with three launchers.

    python benchmarks/launcher_overhead.py [--jobs 16] [--repeat 1]

Runs ``basic`` (sequential, in process), ``joblib`` (hydra-joblib-launcher, loky processes) and
``flow`` (one local Flow task per job) with the same parallelism (the CPU count), each as a fresh
``python app.py -m`` process, and prints the wall time and the ratio to joblib. It never asserts a
time: machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def noop(cfg: DictConfig) -> int:
    return 0


if __name__ == "__main__":
    noop()
"""


def _sweep(app: Path, workdir: Path, launcher_args: list[str], jobs: int) -> float:
    env = dict(os.environ, FLOW_HOME=str(workdir / "flow-home"), FLOW_PROVIDER="local")
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        str(app),
        "-m",
        f"+x=range({jobs})",
        "hydra/job_logging=disabled",
        *launcher_args,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(launcher_args)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    launchers = {
        "basic": ["hydra/launcher=basic"],
        "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}"],
        "flow": ["hydra/launcher=flow", f"hydra.launcher.max_parallel={workers}"],
    }
    times: dict[str, list[float]] = {name: [] for name in launchers}
    with tempfile.TemporaryDirectory(prefix="launcher-overhead-") as tmp:
        root = Path(tmp)
        app = root / "noop_app.py"
        app.write_text(APP)
        for round_ in range(args.repeat):
            for name, launcher_args in launchers.items():  # interleaved: load drifts hit all alike
                workdir = root / f"{name}-{round_}"
                workdir.mkdir()
                times[name].append(_sweep(app, workdir, launcher_args, args.jobs))
    joblib = statistics.median(times["joblib"])
    print(
        f"{args.jobs}-job no-op sweep, parallelism {workers}, median of {args.repeat} run(s), "
        "wall time of the whole `python app.py -m` process"
    )
    print(f"{'launcher':<10}{'wall s':>10}{'per job s':>12}{'vs joblib':>12}")
    for name, values in times.items():
        wall = statistics.median(values)
        print(f"{name:<10}{wall:>10.2f}{wall / args.jobs:>12.3f}{wall / joblib:>11.2f}x")


if __name__ == "__main__":
    main()
