"""Learning curves of a whole sweep: ``RunCollection.metric_history`` against MLflow's own way,
a loop of ``MlflowClient.get_metric_history`` over the runs.

The store is the one ``benchmarks/runcollection_load.py`` builds (a fresh sqlite MLflow store, N
runs, 3 metrics × 20 steps each). Each timed read runs in a fresh process after a warm-up outside
the timing (imports, the run list, MLflow's engine): only fetching the histories is timed. Rounds
interleave the two readers so machine load hits both alike. Nothing is asserted.

    python benchmarks/metric_history.py                      # N = 10,000, key loss, 3 rounds
    python benchmarks/metric_history.py --n 1000 --keys loss accuracy val_loss --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import runcollection_load as load_benchmark
from runcollection_load import EXPERIMENT, build_store

READERS = ("metric_history", "mlflow_loop")
STEPS = 20


def worker(reader: str, db: Path, keys: list[str]) -> None:
    """Warm up, then time fetching every run's history of ``keys``; print JSON."""
    uri = f"sqlite:///{db}"
    if reader == "metric_history":
        from hydraflow import RunCollection

        runs = RunCollection.load(EXPERIMENT, tracking_uri=uri)
        runs.first().metric_history(keys[0])  # the driver and the connection, outside the timing

        def read() -> int:
            return runs.metric_history(keys).height

    else:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        run_ids = [
            r.info.run_id
            for r in client.search_runs(
                [client.get_experiment_by_name(EXPERIMENT).experiment_id],  # type: ignore[union-attr]
                max_results=50_000,
            )
        ]
        client.get_metric_history(run_ids[0], keys[0])

        def read() -> int:
            return sum(len(client.get_metric_history(r, k)) for r in run_ids for k in keys)

    started = time.perf_counter()
    rows = read()
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))


def measure(reader: str, db: Path, keys: list[str]) -> dict[str, float]:
    """Run :func:`worker` in a fresh interpreter and read its JSON line."""
    return load_benchmark.measure(reader, db, "--keys", *keys, script=__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000])
    parser.add_argument("--keys", nargs="+", default=["loss"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=READERS)
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.db, args.keys)
        return
    print(
        f"{'N':>7} {'reader':<15} {'best s':>8} {'median s':>9} {'values':>9} {'loop / ours':>12}"
    )
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "mlflow.db"
            build_store(db, n, steps=STEPS)
            results: dict[str, list[dict[str, float]]] = {reader: [] for reader in READERS}
            for _ in range(args.rounds):
                for reader in READERS:
                    results[reader].append(measure(reader, db, args.keys))
            median = {r: statistics.median(x["seconds"] for x in v) for r, v in results.items()}
            best = {r: min(x["seconds"] for x in v) for r, v in results.items()}
            for reader, rs in results.items():
                ratio = median["mlflow_loop"] / median[reader]
                print(
                    f"{n:>7} {reader:<15} {best[reader]:>8.3f} {median[reader]:>9.3f} "
                    f"{int(rs[0]['rows']):>9} {ratio:>11.1f}x"
                )
            print(f"{'':>7} (keys {', '.join(args.keys)}; median of {args.rounds} fresh processes)")


if __name__ == "__main__":
    main()
