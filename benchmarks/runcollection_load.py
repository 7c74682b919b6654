"""Load N runs three ways and compare: RunCollection (ADBC + polars), mlflow.search_runs, bare SQL.

Each N gets a fresh sqlite MLflow store (schema made by MLflow itself) filled by SQL in bulk: N runs with
8 params, 3 metrics of 10 steps each (history + latest) and 5 tags. Each timed read runs in a fresh
process (so peak memory is its own) after a warm-up outside the timing (imports, connection, MLflow's
engine); whatever either side imports lazily on its first read stays inside the timing, read from
compiled bytecode on both sides (hydraflow is byte-compiled first, as an installed package is).
Rounds interleave the readers so machine load hits them alike. Besides wall time, each read reports
the CPU time of its process (all threads): on a machine busier than its cores, wall time follows CPU
time and the wall ratio drifts toward the CPU ratio. Nothing is asserted.

    python benchmarks/runcollection_load.py            # N = 1,000 and 10,000, 5 rounds
    python benchmarks/runcollection_load.py --n 500    # other sizes"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

EXPERIMENT = "bench"
STEPS = 10
READERS = ("runcollection", "search_runs", "bare_sql")
# Warm loads in the same process (a notebook): the store unchanged, then with 1% new runs
WARM = ("warm_unchanged", "warm_1pct_new")


def build_store(db: Path, n: int, steps: int = STEPS) -> None:
    """An MLflow sqlite store with ``n`` finished runs in experiment ``bench`` (``steps`` values
    of each of 3 metrics per run)."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment_id = int(
        client.create_experiment(EXPERIMENT, artifact_location=str(db.parent / "art"))
    )
    rng = random.Random(0)
    now = int(time.time() * 1000)
    runs: list[tuple[object, ...]] = []
    params: list[tuple[object, ...]] = []
    metrics: list[tuple[object, ...]] = []
    latest: list[tuple[object, ...]] = []
    tags: list[tuple[object, ...]] = []
    for i in range(n):
        run_id = uuid.uuid4().hex
        start = now + i * 10
        runs.append(
            (
                run_id,
                f"run-{i}",
                "LOCAL",
                "",
                "",
                "bench",
                "FINISHED",
                start,
                start + 5,
                "",
                "active",
                f"{db.parent}/art/{run_id}/artifacts",
                experiment_id,
            )
        )
        values = {
            "model.type": rng.choice(["lstm", "cnn", "mlp"]),
            "model.hidden": str(rng.choice([64, 128, 256])),
            "lr": str(rng.choice([1e-2, 1e-3, 1e-4])),
            "optimizer.name": rng.choice(["adam", "sgd"]),
            "optimizer.momentum": str(rng.random()),
            "dataset.name": rng.choice(["mnist", "cifar"]),
            "seed": str(i),
            "use_amp": str(rng.random() > 0.5),
        }
        params.extend((k, v, run_id) for k, v in values.items())
        for key in ("loss", "accuracy", "val_loss"):
            for step in range(steps):
                number = rng.random()
                metrics.append((key, number, start + step, run_id, step, 0))
            latest.append((key, number, start + steps - 1, steps - 1, 0, run_id))
        for tag, text in (
            ("mlflow.runName", f"run-{i}"),
            ("mlflow.user", "bench"),
            ("hydraflow.sweep_id", "sweep-1"),
            ("hydraflow.job_num", str(i)),
            ("hydraflow.config_hash", uuid.uuid4().hex),
        ):
            tags.append((tag, text, run_id))
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
            "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
            "experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            runs,
        )
        conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
        conn.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)",
            metrics,
        )
        conn.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "VALUES (?,?,?,?,?,?)",
            latest,
        )
        conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)


def _bare_sql(db: Path) -> int:
    """The floor for a Python reader: the four tables fetched with sqlite3, no pivot."""
    with sqlite3.connect(db) as conn:
        chosen = (
            "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active' AND experiment_id IN "
            f"(SELECT experiment_id FROM experiments WHERE name = '{EXPERIMENT}')"
        )
        rows = conn.execute(f"SELECT * FROM runs WHERE run_uuid IN ({chosen})").fetchall()
        for table in ("params", "latest_metrics", "tags"):
            conn.execute(f"SELECT * FROM {table} WHERE run_uuid IN ({chosen})").fetchall()
    return len(rows)


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it restarts at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(reader: str, db: Path) -> None:
    """Warm up (imports, connections), then time one full read; print JSON (seconds, peak MB)."""
    uri = f"sqlite:///{db}"
    if reader == "runcollection":
        import adbc_driver_manager  # imported by the first read otherwise
        import adbc_driver_sqlite

        from hydraflow import RunCollection

        adbc_driver_manager.AdbcConnection(adbc_driver_sqlite.connect(f"file:{db}?mode=ro")).close()

        def read() -> int:
            return RunCollection.load(EXPERIMENT, tracking_uri=uri).to_frame().height

    elif reader == "warm":
        _warm(db)
        return
    elif reader == "search_runs":
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.search_experiments()  # engine and schema check, outside the timing

        def read() -> int:
            return len(mlflow.search_runs(experiment_names=[EXPERIMENT]))

    else:

        def read() -> int:
            return _bare_sql(db)

    cpu = _cpu_seconds()
    started = time.perf_counter()
    rows = read()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": rows, "peak_mb": _peak_mb()}))


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _add_runs(db: Path, n: int) -> None:
    """``n`` new finished runs like build_store's, appended by SQL to an existing store."""
    extra = db.with_name("extra.db")
    build_store(extra, n)
    with sqlite3.connect(db) as conn:
        conn.execute("ATTACH DATABASE ? AS extra", (str(extra),))
        for table in ("runs", "params", "metrics", "latest_metrics", "tags"):
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM extra.{table}")
        conn.commit()
        conn.execute("DETACH DATABASE extra")


def _warm(db: Path) -> None:
    """On a copy of the store: load, time a load of the unchanged store, add 1% runs, time again."""
    import shutil

    from hydraflow import RunCollection

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "mlflow.db"
        shutil.copy(db, copy)
        uri = f"sqlite:///{copy}"
        rows = RunCollection.load(EXPERIMENT, tracking_uri=uri).to_frame().height
        started = time.perf_counter()
        RunCollection.load(EXPERIMENT, tracking_uri=uri)
        unchanged = time.perf_counter() - started
        _add_runs(copy, max(1, rows // 100))
        started = time.perf_counter()
        after = RunCollection.load(EXPERIMENT, tracking_uri=uri).to_frame().height
        grown = time.perf_counter() - started
    print(json.dumps({"warm_unchanged": unchanged, "warm_1pct_new": grown, "rows": after}))


def measure(reader: str, db: Path, *extra: str, script: str = __file__) -> dict[str, float]:
    """Run ``script --worker reader --db db *extra`` in a fresh interpreter; its last JSON line."""
    out = subprocess.run(
        [sys.executable, script, "--worker", reader, "--db", str(db), *extra],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _compile_hydraflow() -> None:
    """Byte-compile hydraflow, as installing a package does (mlflow's modules come compiled), so
    that a module imported on the first read is not compiled inside the timing."""
    import compileall

    import hydraflow

    compileall.compile_dir(Path(hydraflow.__file__).parent, quiet=1)


def _load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per reader")
    parser.add_argument("--worker", choices=[*READERS, "warm"])
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.db)
        return
    _compile_hydraflow()
    print(f"start: {_load_note()}")
    print(
        f"{'N':>7} {'reader':<14} {'best s':>8} {'median s':>9} {'CPU s':>7} {'rows':>7} "
        f"{'peak MB':>8}   search_runs / reader: wall best, wall median, CPU median"
    )
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "mlflow.db"
            started = time.perf_counter()
            build_store(db, n)
            built = time.perf_counter() - started
            results: dict[str, list[dict[str, float]]] = {reader: [] for reader in READERS}
            for _ in range(args.rounds):  # interleaved, so a busy machine slows every reader alike
                for reader in READERS:
                    results[reader].append(measure(reader, db))
            best = {reader: min(r["seconds"] for r in rs) for reader, rs in results.items()}
            median = {
                reader: statistics.median(r["seconds"] for r in rs)
                for reader, rs in results.items()
            }
            cpu = {
                reader: statistics.median(r["cpu"] for r in rs) for reader, rs in results.items()
            }
            for reader, rs in results.items():
                print(
                    f"{n:>7} {reader:<14} {best[reader]:>8.3f} {median[reader]:>9.3f} "
                    f"{cpu[reader]:>7.3f} {int(rs[0]['rows']):>7} "
                    f"{max(r['peak_mb'] for r in rs):>8.0f}   "
                    f"{best['search_runs'] / best[reader]:>8.1f}x "
                    f"{median['search_runs'] / median[reader]:>8.1f}x "
                    f"{cpu['search_runs'] / cpu[reader]:>8.1f}x"
                )
            warm = [measure("warm", db) for _ in range(args.rounds)]
            for label in WARM:
                times = [w[label] for w in warm]
                print(
                    f"{n:>7} {label:<14} {min(times):>8.4f} {statistics.median(times):>9.4f} "
                    f"{'':>7} {int(warm[0]['rows']):>7} {'':>8}   "
                    f"{best['search_runs'] / min(times):>8.0f}x "
                    f"{median['search_runs'] / statistics.median(times):>8.0f}x"
                )
            print(
                f"{'':>7} (store built in {built:.1f} s; best and median of {args.rounds} rounds, "
                "CPU: median; warm: a second load in the same process, of the unchanged store and "
                "after adding 1% runs)"
            )
    print(f"end: {_load_note()}")


if __name__ == "__main__":
    main()
