"""``flow status``, ``flow logs``, ``flow cancel`` and ``flow ssh``: see and control tasks."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from flow_backend.cli._common import client_from, console, error_console, print_json, record_json
from flow_backend.errors import ValidationError
from flow_backend.hooks import run_sweep_cancelled
from flow_backend.models import TaskRecord, format_price

__all__ = ["register"]

_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "magenta",
}


def register(subparsers: Any) -> None:
    """Add ``status``, ``logs``, ``cancel`` and ``ssh``."""
    status = subparsers.add_parser("status", help="show tasks (all, or one by id)")
    status.add_argument("task_id", nargs="?", help="one task's id")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--active", action="store_true", help="only tasks that have not ended")
    status.set_defaults(func=status_command)

    logs = subparsers.add_parser("logs", help="print a task's output")
    logs.add_argument("task_id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    logs.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N lines")
    logs.set_defaults(func=logs_command)

    cancel = subparsers.add_parser("cancel", help="stop tasks")
    cancel.add_argument("task_id", nargs="?")
    cancel.add_argument("--all", action="store_true", help="every task that has not ended")
    cancel.add_argument(
        "--sweep", metavar="SWEEP_ID", help="every live task whose name contains SWEEP_ID"
    )
    cancel.set_defaults(func=cancel_command)

    ssh = subparsers.add_parser("ssh", help="a shell (or one command) where a task runs")
    ssh.add_argument("task_id")
    ssh.add_argument("remote_command", nargs=argparse.REMAINDER, help="-- CMD to run instead")
    ssh.set_defaults(func=ssh_command)


def _table(records: list[TaskRecord]) -> Table:
    table = Table(title=f"{len(records)} task(s)")
    for column in ("id", "name", "status", "instance", "created", "exit", "$/h", "message"):
        table.add_column(column, no_wrap=column in ("id", "name", "status"))
    for record in records:
        style = _STYLE.get(record.status.value, "")
        table.add_row(
            record.task_id,
            record.name,
            f"[{style}]{record.status.value}[/{style}]" if style else record.status.value,
            record.instance_type,
            record.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "" if record.exit_code is None else str(record.exit_code),
            format_price(record.cost_per_hour),
            record.message or "",
        )
    return table


def status_command(args: argparse.Namespace) -> int:
    """Print one task or all of them."""
    with client_from(args) as client:
        if args.task_id:
            record = client.get_task(args.task_id).record
            if args.json:
                print_json(record_json(record))
            else:
                for key, value in record_json(record).items():
                    if value not in (None, {}, []):
                        console.print(f"{key + ':':16} {value}")
            return 0
        records = [task.record for task in client.list_tasks(active_only=args.active)]
        if args.json:
            print_json([record_json(record) for record in records])
        else:
            console.print(_table(records))
        return 0


def logs_command(args: argparse.Namespace) -> int:
    """Print (or follow) a task's output."""
    with client_from(args) as client:
        task = client.get_task(args.task_id)
        if args.follow:
            if args.tail is not None:
                print(client.provider.logs(task.task_id, tail=args.tail), end="", flush=True)
            for line in client.provider.follow_logs(task.task_id):
                print(line, end="", flush=True)
            return 0
        print(client.provider.logs(task.task_id, tail=args.tail), end="")
        return 0


def cancel_command(args: argparse.Namespace) -> int:
    """Cancel one task, every live one, or every live one of a sweep."""
    chosen = sum(bool(x) for x in (args.task_id, args.all, args.sweep))
    if chosen != 1:
        raise ValidationError(
            "Give exactly one of: a task id, --all, or --sweep SWEEP_ID",
            field="task_id",
            hint="e.g. `flow cancel local-18c...` or `flow cancel --all`",
        )
    with client_from(args) as client:
        if args.task_id:
            targets = [client.get_task(args.task_id)]
        else:
            targets = client.list_tasks(active_only=True)
            if args.sweep:
                targets = [task for task in targets if args.sweep in task.name]
        if not targets:
            error_console.print("No live task to cancel.")
        # one call for all (slurm: one scancel, an array's elements at once)
        finals = client.provider.cancel_many([task.task_id for task in targets]) if targets else {}
        for task in targets:
            was = task.status
            final = finals[task.task_id]
            if was.is_terminal:
                console.print(f"{task.task_id}: already {final.status.value}")
            else:
                console.print(f"{task.task_id}: {final.status.value}")
    if args.sweep:  # e.g. hydraflow ends the sweep's MLflow runs that nobody is left to end
        for line in run_sweep_cancelled(args.sweep):
            console.print(line, markup=False)
    return 0


def ssh_command(args: argparse.Namespace) -> int:
    """Run a command where the task runs, or open an interactive shell there."""
    command = list(args.remote_command)
    if command and command[0] == "--":
        command = command[1:]
    with client_from(args) as client:
        task = client.get_task(args.task_id)
        output = task.shell(" ".join(command) if command else None)
        if output:
            print(output, end="")
        return 0
