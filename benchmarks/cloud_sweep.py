"""Mithril against the fake Mithril (loopback HTTP + a loopback sshd): warm workers, and polling.

Run: ``python benchmarks/cloud_sweep.py [workers] [--jobs 32] [--workers 4] [--runtime 1]
[--delay 5] [--poll SECONDS]`` (the default; the launcher's own poll interval unless ``--poll``) or ``python benchmarks/cloud_sweep.py polling [--jobs 50] [--poll 1.0]
[--submitters 16]``. Needs ``/usr/sbin/sshd`` (the fake's instances are reached over SSH like real
ones). The fake behaves like the real cloud (its defaults): every instance has an address of its
own whose sshd answers late, the project requires its SSH key, prices are the real A100 spot prices.

``workers``: the same Hydra sweep of J jobs of a tiny app (each sleeps ``--runtime`` r seconds) with
``max_parallel`` K, run twice through the ``flow`` launcher against a fake whose bids take
``--delay`` D seconds to be allocated (plus the fake's boot and sshd delays): on warm workers
(``reuse_workers=true``: K bids, each provisioned once) and one task per job
(``reuse_workers=false``: J bids, each provisioned). Prints, side by side: the wall time from the
first bid to the sweep's end and its ratio to the bound D + J·r/K, the bids made, the dollars billed
(allocated seconds × spot price), instances left billing, and the whole command's wall time.

``polling``: the provider alone (no launcher):

- submission: wall time to place every spot bid (``--submitters`` threads), API requests per job;
- polling: API requests per poll cycle (``get_many`` of every live task) and SSH status round
  trips per cycle, as the number of live tasks falls from ``--jobs`` to 0 — the claim is O(1) —
  side by side with the alternative, one ``get`` per task (measured once, on the first cycle);
- billing: seconds each instance stayed allocated after its command exited (the provider reads the
  exit code, brings the log home, then cancels the bid; aim: at most one poll interval, median),
  and dollars per job (allocated seconds × spot price), of which after the command's end.

It asserts nothing: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from flow_backend import Flow, TaskConfig
from flow_backend.providers.mithril import MithrilProvider
from flow_backend.providers.mithril import nodes as nodes_module
from flow_backend.settings import FlowSettings
from flow_backend.testing import FakeMithril

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sshd import SSHDUnavailable, start_sshd, stop_sshd

REGION = "us-central1-a"
APP = """import time

import hydra


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def job(cfg) -> float:
    time.sleep(float(cfg.sleep))
    return float(cfg.n)


if __name__ == "__main__":
    job()
"""
BOOT_DELAY = 0.2  # the fake's boot and sshd delays, added to --delay in the bound
SSH_READY_DELAY = 0.3


def sweep(
    jobs: int,
    workers: int,
    runtime: float,
    delay: float,
    poll: float | None,
    reuse: bool,
    work: Path,
) -> dict:
    """One Hydra sweep of ``jobs`` jobs on a fresh fake; what it took and what it billed."""
    server, sshd_process = start_sshd(work / "sshd")
    project = work / "project"
    project.mkdir(parents=True)
    (project / "app.py").write_text(APP)
    try:
        with FakeMithril(
            work / "fake",
            ssh_destination=server.destination,
            provisioning_delay=delay,
            boot_delay=BOOT_DELAY,
            ssh_ready_delay=SSH_READY_DELAY,
            capacity=jobs,
        ) as fake:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("FLOW_", "MITHRIL_", "MLFLOW_", "HYDRAFLOW_"))
            }
            env.update(fake.env)
            env.update(
                FLOW_HOME=str(work / "home"),
                FLOW_CONFIG_PATH=str(work / "no-config.yaml"),
                FLOW_MITHRIL_REMOTE_ROOT=str(work / "remote"),
                FLOW_SSH_KEY_PATH=str(server.key_path),
            )
            command = [
                sys.executable,
                "app.py",
                "-m",
                "hydra/launcher=flow",
                "hydra.launcher.provider=mithril",
                "hydra.launcher.instance=a100",
                f"hydra.launcher.python={sys.executable}",
                f"hydra.launcher.max_parallel={workers}",
                f"hydra.launcher.reuse_workers={str(reuse).lower()}",
                *([f"hydra.launcher.poll_interval={poll}"] if poll else []),
                "hydra.sweep.dir=multirun/sweep",
                f"+sleep={runtime}",
                f"+n=range({jobs})",
            ]
            began = time.time()
            proc = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
            ended = time.time()
            if proc.returncode != 0:
                raise RuntimeError(f"the sweep failed:\n{proc.stderr[-3000:]}")
            bids = fake.bids()
            first_bid = min(datetime.fromisoformat(b["created_at"]).timestamp() for b in bids)
            return {
                "wall": ended - began,
                "from_first_bid": ended - first_bid,
                "bids": len(bids),
                "dollars": sum(fake.dollars_billed().values()),
                "left_billing": len(fake.billing_instances()),
                "done": len(list((project / "multirun" / "sweep").glob("*/.hydra/config.yaml"))),
            }
    finally:
        stop_sshd(sshd_process)


def compare(
    jobs: int, workers: int, runtime: float, delay: float, poll: float | None, work: Path
) -> None:
    """Run the sweep on warm workers and with one task per job; print them side by side."""
    provisioning = delay + BOOT_DELAY + SSH_READY_DELAY
    bound = provisioning + jobs * runtime / workers
    runs = {
        "warm workers": sweep(jobs, workers, runtime, delay, poll, True, work / "workers"),
        "one task per job": sweep(jobs, workers, runtime, delay, poll, False, work / "per-task"),
    }
    table = Table(
        title=f"{jobs} jobs of {runtime:g} s on at most {workers} at once, bids allocated after "
        f"{delay:g} s (+{BOOT_DELAY + SSH_READY_DELAY:g} s boot and sshd): bound D + J·r/K = "
        f"{provisioning:g} + {jobs}·{runtime:g}/{workers} = {bound:.1f} s; poll every "
        f"{f'{poll:g} s' if poll else '5 s (the default)'}"
    )
    table.add_column("measure")
    for name in runs:
        table.add_column(name, justify="right")
    rows = [
        ("jobs finished", lambda r: f"{r['done']} / {jobs}"),
        ("wall from the first bid (s)", lambda r: f"{r['from_first_bid']:.1f}"),
        ("  / (D + J·r/K)", lambda r: f"{r['from_first_bid'] / bound:.2f}"),
        ("wall of the whole command (s)", lambda r: f"{r['wall']:.1f}"),
        ("bids made", lambda r: str(r["bids"])),
        ("dollars billed", lambda r: f"${r['dollars']:.4f}"),
        ("instances left billing", lambda r: str(r["left_billing"])),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in runs.values()))
    Console().print(table)
    ours, theirs = runs["warm workers"], runs["one task per job"]
    print(
        f"warm workers / one task per job: wall {ours['from_first_bid'] / theirs['from_first_bid']:.2f}x, "
        f"bids {ours['bids']} vs {theirs['bids']}, "
        f"dollars {ours['dollars'] / max(theirs['dollars'], 1e-12):.2f}x"
    )


def _summary(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return " / ".join(
        f"{value:.{digits}f}" for value in (min(values), statistics.median(values), max(values))
    )


def run(jobs: int, poll: float, submitters: int, work: Path) -> None:
    """Run the polling benchmark and print its tables."""
    os.environ["FLOW_MITHRIL_REMOTE_ROOT"] = str(work / "remote")
    server, sshd_process = start_sshd(work / "sshd")
    ssh_reads: list[int] = []
    real_read = nodes_module.read_statuses

    def counting_read(conn: Any, task_dirs: Any) -> Any:
        ssh_reads.append(len(task_dirs))
        return real_read(conn, task_dirs)

    nodes_module.read_statuses = counting_read
    try:
        with FakeMithril(
            work / "fake", ssh_destination=server.destination, provisioning_delay=0.5, capacity=jobs
        ) as fake:
            spot = fake.state.spot_prices[(fake.instance_type_fid("a100-80gb.sxm.1x"), REGION)]
            settings = FlowSettings(
                provider="mithril",
                home=work / "home",
                mithril_api_key=SecretStr(fake.api_key),
                mithril_api_url=fake.url,
                ssh_key_path=server.key_path,
                poll_interval=poll,
            )
            provider = MithrilProvider(settings)
            with Flow(provider) as flow:
                flow.provider.price_per_hour("a100")  # resolve project, types and key once
                fake.reset_request_counts()
                configs = [
                    TaskConfig(
                        name=f"hf-bench-{i}",
                        unique_name=False,
                        command="echo job $FLOW_TASK_NAME",
                        instance_type="a100",
                        region=REGION,
                        upload_code=False,
                    )
                    for i in range(jobs)
                ]
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=submitters) as pool:
                    tasks = list(pool.map(flow.run, configs))
                submit_seconds = time.perf_counter() - start
                submit_requests = sum(fake.request_counts.values())

                live = [task.task_id for task in tasks]
                polls: list[tuple[int, int, int, int]] = []  # live, list requests, cancels, ssh
                # the API's reads lag a new bid: the alternative's GET would answer 404 before
                fake.wait_until(lambda: all(fake.shows(task_id) for task_id in live), 10)
                began = time.perf_counter()
                fake.reset_request_counts()
                api = provider.client  # the alternative's reads: a bid and its instances
                project = fake.project_fid
                for task_id in live:
                    api.get_bid(task_id)
                    api.list_instances(project, bid_fids=[task_id])
                per_task_requests = sum(fake.request_counts.values())
                per_task_live = len(live)
                while live:
                    cycle = time.perf_counter()
                    fake.reset_request_counts()
                    ssh_reads.clear()
                    records = flow.provider.get_many(live)
                    counts = fake.request_counts
                    lists = counts["GET /v2/spot/bids"] + counts["GET /v2/instances"]
                    lists += counts["GET /v2/spot/bids/{bid_fid}"]
                    polls.append(
                        (len(live), lists, counts["DELETE /v2/spot/bids/{bid_fid}"], len(ssh_reads))
                    )
                    live = [task_id for task_id, r in records.items() if not r.status.is_terminal]
                    time.sleep(max(0.0, poll - (time.perf_counter() - cycle)))
                total_seconds = time.perf_counter() - began
                statuses = [flow.provider.get(t.task_id).status.value for t in tasks]
            billed = list(fake.seconds_billed_after_exit().values())
            dollars = list(fake.dollars_billed().values())
            left_billing = len(fake.billing_instances())
    finally:
        nodes_module.read_statuses = real_read
        stop_sshd(sshd_process)

    console = Console()
    table = Table(title=f"Mithril provider on the fake: {jobs} jobs, poll every {poll:g} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("submission wall time (s)", f"{submit_seconds:.2f}")
    table.add_row("submission per job (ms)", f"{1000 * submit_seconds / jobs:.1f}")
    table.add_row("API requests per submitted job", f"{submit_requests / jobs:.2f}")
    table.add_row("poll cycles until all ended", str(len(polls)))
    table.add_row("time until all ended (s)", f"{total_seconds:.1f}")
    table.add_row("completed / all", f"{statuses.count('completed')} / {jobs}")
    table.add_row("instances still billing at the end", str(left_billing))
    table.add_row("billed s after exit (min / median / max)", _summary(billed))
    table.add_row(
        "billed after exit / poll interval (median)",
        f"{statistics.median(billed) / poll:.2f}" if billed else "-",
    )
    table.add_row(f"dollars per job at ${spot:.2f}/h (min / median / max)", _summary(dollars, 4))
    table.add_row(
        "dollars per job after its command ended (median)",
        f"{statistics.median(billed) * spot / 3600:.5f}" if billed else "-",
    )
    first = polls[0][1] if polls else 0
    table.add_row(
        f"API requests per poll: get_many vs one get per task ({per_task_live} live)",
        f"{first} vs {per_task_requests} (×{per_task_requests / max(first, 1):.0f})",
    )
    console.print(table)

    cycles = Table(title="Per poll cycle (first 5, then every 5th): cost vs live tasks")
    for column in (
        "cycle",
        "live tasks",
        "API list requests",
        "bid cancels",
        "SSH status round trips",
    ):
        cycles.add_column(column, justify="right")
    for index, (count, lists, cancels, reads) in enumerate(polls):
        if index < 5 or index % 5 == 0 or index == len(polls) - 1:
            cycles.add_row(str(index), str(count), str(lists), str(cancels), str(reads))
    console.print(cycles)
    list_costs = [lists for _, lists, _, _ in polls]
    console.print(
        f"API list requests per cycle: min {min(list_costs)}, max {max(list_costs)} "
        f"for {max(p[0] for p in polls)} → {min(p[0] for p in polls)} live tasks (O(1): pages of 100)."
    )


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=["workers", "polling"], default="workers")
    parser.add_argument("--jobs", type=int, help="jobs (default: 32 workers, 50 polling)")
    parser.add_argument("--workers", type=int, default=4, help="max_parallel K (workers)")
    parser.add_argument("--runtime", type=float, default=1.0, help="seconds per job r (workers)")
    parser.add_argument("--delay", type=float, default=5.0, help="provisioning delay D (workers)")
    parser.add_argument(
        "--poll", type=float, help="poll interval in s (default: the launcher's 5 s; polling: 1 s)"
    )
    parser.add_argument("--submitters", type=int, default=16, help="threads placing bids (polling)")
    args = parser.parse_args()
    jobs = args.jobs or (32 if args.part == "workers" else 50)
    poll = args.poll if args.poll is not None or args.part == "workers" else 1.0
    if jobs < 1 or args.workers < 1 or (poll is not None and poll <= 0) or args.submitters < 1:
        parser.error("--jobs, --workers and --submitters must be at least 1, --poll positive")
    if args.runtime < 0 or args.delay < 0:
        parser.error("--runtime and --delay must be 0 or more seconds")
    with tempfile.TemporaryDirectory(prefix="cloud-bench-") as work:
        try:
            if args.part == "workers":
                compare(jobs, args.workers, args.runtime, args.delay, poll, Path(work))
            else:
                assert poll is not None
                run(jobs, poll, args.submitters, Path(work))
        except SSHDUnavailable as error:
            print(f"cannot run: {error}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
