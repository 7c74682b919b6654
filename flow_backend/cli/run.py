"""``flow run CMD|task.yaml``: start a task (optionally wait for it, or only show what would run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flow_backend.cli._common import client_from, console, error_console
from flow_backend.errors import ValidationError
from flow_backend.models import TaskStatus, format_price
from flow_backend.task import Task
from flow_backend.task_config import TaskConfig

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``flow run``."""
    parser = subparsers.add_parser(
        "run",
        help="start a task from a command or a task.yaml",
        description="Start a task. Quote a shell command ('python train.py --lr 3'), or put it "
        "after '--' (flow run -i a100 -- python train.py --lr 3), or give a task.yaml.",
    )
    parser.add_argument("target", nargs="+", help="a command, or the path of a task.yaml")
    parser.add_argument("-i", "--instance-type", help="short name or full spec, e.g. a100, 4xa100")
    parser.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="environment variable (repeat)"
    )
    parser.add_argument("--name", help="task name (a unique suffix is added)")
    parser.add_argument("-n", "--num-instances", type=int, help="number of nodes (ranks)")
    parser.add_argument("--max-run-time", type=float, metavar="HOURS", help="time limit in hours")
    parser.add_argument("--wait", action="store_true", help="stream the logs until the task ends")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would run and at what price; start nothing",
    )
    parser.set_defaults(func=run_command)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(
                f"--env expects KEY=VALUE, got {pair!r}",
                field="env",
                value=pair,
                hint="Write e.g. --env WANDB_PROJECT=ml-research",
            )
        env[key] = value
    return env


def build_config(args: argparse.Namespace) -> TaskConfig:
    """The TaskConfig the arguments describe (a task.yaml with the options on top)."""
    fields: dict[str, Any] = {}
    if args.instance_type:
        fields["instance_type"] = args.instance_type
    if args.name:
        fields["name"] = args.name
    if args.num_instances is not None:
        fields["num_instances"] = args.num_instances
    if args.max_run_time is not None:
        fields["max_run_time_hours"] = args.max_run_time
    env = _parse_env(args.env)
    target: list[str] = args.target
    lone = target[0] if len(target) == 1 else ""
    if lone.endswith((".yaml", ".yml")) and not any(c.isspace() for c in lone):
        task_file = Path(lone).expanduser()
        if not task_file.is_file():
            raise ValidationError(
                f"task file {str(task_file)!r} does not exist (in {Path.cwd()})",
                field="target",
                value=target[0],
                hint="Check the path (a command is quoted with its arguments, e.g. "
                "flow run 'cat config.yaml')",
            )
        base = TaskConfig.from_yaml(task_file)
        data = base.model_dump()
        if "instance_type" in fields:
            data["min_gpu_memory_gb"] = None
        data.update(fields)
        data["env"] = {**base.env, **env}
        data["unique_name"] = "name" in fields
        return TaskConfig(**data)
    command: str | list[str] = target[0] if len(target) == 1 else target
    return TaskConfig(command=command, env=env, **fields)


def run_command(args: argparse.Namespace) -> int:
    """Start (or describe) the task; with ``--wait`` stream its logs and return its exit code."""
    config = build_config(args)
    with client_from(args) as client:
        instance = config.instance
        if args.dry_run:
            limit = client.provider.limit_price_per_hour(config)  # the provider's own checks first
            price = client.provider.price_per_hour(instance.name) * config.num_instances
            console.print(f"[bold]Would run[/bold] {config.command_string!r}")
            console.print(f"  name:          {config.name}")
            console.print(f"  provider:      {client.settings.provider}")
            console.print(f"  instance type: {instance.name} ({instance.describe()})")
            console.print(f"  instances:     {config.num_instances}")
            console.print(
                f"  price:         {format_price(price)}/h on {client.settings.provider} "
                f"(catalog: {format_price(instance.price_per_hour * config.num_instances)}/h)"
            )
            if limit is not None:
                console.print(
                    f"  limit price:   {format_price(limit)}/h per instance (the most the bid "
                    "offers: it follows the market, capped by max_price_per_hour)"
                )
            console.print("Nothing was started (--dry-run).")
            return 0
        task = client.run(config)
        error_console.print(
            f"Started task [bold]{task.task_id}[/bold] ({task.name}) on {instance.name}, "
            f"{task.cost_per_hour}/h: {task.status.value}"
        )
        if task.message:
            error_console.print(f"note: {task.message}")
        if not args.wait:
            note = client.provider.detach(task.task_id)
            if note:
                error_console.print(f"note: {note}")
            return 0
        return _follow(task)


def _follow(task: Task) -> int:
    try:
        for line in task.provider.follow_logs(task.task_id):
            print(line, end="", flush=True)
        status = task.wait()
    except KeyboardInterrupt:
        task.stop()
        error_console.print(f"Interrupted: task {task.task_id} cancelled.")
        return 130
    detail = f" ({task.message})" if task.message and status != TaskStatus.COMPLETED else ""
    error_console.print(f"Task {task.task_id} {status.value}{detail}.")
    if status == TaskStatus.COMPLETED:
        return 0
    return task.exit_code if task.exit_code else 1
