"""Mithril provider against the fake Mithril (loopback HTTP + a loopback sshd): many short jobs.

Run: ``python benchmarks/cloud_sweep.py [--jobs 50] [--poll 1.0] [--submitters 16]``. Needs
``/usr/sbin/sshd`` (the fake's instances are reached over SSH like real ones). The fake behaves like
the real cloud (its defaults): every instance has an address of its own whose sshd answers late,
the project requires its SSH key, prices are the real A100 spot prices. Prints:

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
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


def _summary(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return " / ".join(
        f"{value:.{digits}f}" for value in (min(values), statistics.median(values), max(values))
    )


def run(jobs: int, poll: float, submitters: int, work: Path) -> None:
    """Run the benchmark and print its tables."""
    import os

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
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval in seconds")
    parser.add_argument("--submitters", type=int, default=16, help="threads placing bids")
    args = parser.parse_args()
    if args.jobs < 1 or args.poll <= 0 or args.submitters < 1:
        parser.error("--jobs and --submitters must be at least 1, --poll positive")
    with tempfile.TemporaryDirectory(prefix="cloud-bench-") as work:
        try:
            run(args.jobs, args.poll, args.submitters, Path(work))
        except SSHDUnavailable as error:
            print(f"cannot run: {error}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
