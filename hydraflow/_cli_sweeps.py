"""``hydraflow sweeps`` and ``hydraflow repair``: see sweeps' state, end what crashed sweeps left.

hydraflow sweeps [--sweep ID] [--json] [--tracking-uri URI]
hydraflow repair [--sweep ID] [--dry-run] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from hydraflow.core.errors import HydraflowError

__all__ = ["register_repair", "register_sweeps"]


def _store(args: argparse.Namespace) -> str:
    """The store's URI (``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``);
    a store that does not exist is an error, never created."""
    from hydraflow.core.store import open_store

    return open_store(args.tracking_uri).uri


def _no_such_sweep(sweep_id: str, uri: str) -> HydraflowError:
    return HydraflowError(
        f"--sweep {sweep_id}: no sweep with this id in {uri}; `hydraflow sweeps` lists them"
    )


def _started(report: Any) -> str:
    run = report.parent or (report.jobs[0] if report.jobs else None)
    if run is None or not run.info.start_time:
        return ""
    return datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cmd_sweeps(args: argparse.Namespace) -> int:
    from hydraflow._mlflow_store import client_for
    from hydraflow.repair import inspect_sweeps

    uri = _store(args)
    reports = inspect_sweeps(client_for(uri), args.sweep)
    if args.sweep and not reports:
        raise _no_such_sweep(args.sweep, uri)
    rows: list[dict[str, Any]] = [
        {
            "sweep_id": r.sweep_id,
            "experiment": r.experiment,
            "state": r.state,
            "parent_run_id": r.parent.info.run_id if r.parent else None,
            "started": _started(r),
            "jobs": r.counts,
            "note": r.note,
        }
        for r in reports
    ]
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} sweep(s) in {uri}", header_style="bold")
    for column in ("sweep", "experiment", "state", "started (UTC)", "jobs", "note"):
        table.add_column(column)
    for row in rows:
        jobs = ", ".join(f"{n} {status}" for status, n in sorted(row["jobs"].items()))
        table.add_row(
            row["sweep_id"], row["experiment"], row["state"], row["started"], jobs, row["note"]
        )
    Console(width=None if sys.stdout.isatty() else 250).print(table)
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from hydraflow.repair import repair_store

    uri = _store(args)
    reports = repair_store(uri, args.sweep, dry_run=args.dry_run, force=args.force)
    if args.sweep and not reports:
        from hydraflow._mlflow_store import client_for
        from hydraflow.repair import inspect_sweeps

        if not inspect_sweeps(client_for(uri), args.sweep):
            raise _no_such_sweep(args.sweep, uri)
    verb = "would end" if args.dry_run else "ended"
    for report in reports:
        count = len(report.to_end) if args.dry_run else report.ended
        if count:
            reasons = sorted(set(report.to_end.values()))
            print(f"sweep {report.sweep_id} ({report.experiment}): {verb} {count} run(s) KILLED")
            for reason in reasons:
                print(f"  hydraflow.end_reason: {reason}")
        else:
            print(f"sweep {report.sweep_id} ({report.experiment}): left RUNNING: {report.note}")
    if not reports:
        print("no RUNNING sweep runs: nothing to repair")
    return 0


def register_sweeps(subparsers: Any) -> None:
    """Add ``hydraflow sweeps``."""
    from hydraflow.cli import _tracking_option

    parser = subparsers.add_parser(
        "sweeps", help="list sweeps with their state (running, orphaned, dead, finished, ...)"
    )
    parser.add_argument("--sweep", metavar="ID", help="only this sweep")
    parser.add_argument("--json", action="store_true", help="print JSON records")
    _tracking_option(parser)
    parser.set_defaults(handler=_cmd_sweeps)


def register_repair(subparsers: Any) -> None:
    """Add ``hydraflow repair``."""
    from hydraflow.cli import _tracking_option

    parser = subparsers.add_parser(
        "repair", help="end KILLED the RUNNING runs of sweeps whose tasks are gone"
    )
    parser.add_argument("--sweep", metavar="ID", help="only this sweep")
    parser.add_argument("--dry-run", action="store_true", help="say what would end; change nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --sweep: also end runs whose liveness cannot be asked (never a live one)",
    )
    _tracking_option(parser)
    parser.set_defaults(handler=_cmd_repair)
