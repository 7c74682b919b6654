"""``flow instance-types``: the catalog with GPUs, memory and price per hour."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from flow_backend.cli._common import console, print_json
from flow_backend.instance_types import catalog

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``instance-types``."""
    parser = subparsers.add_parser("instance-types", help="list instance types and prices")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=instance_types_command)


def instance_types_command(args: argparse.Namespace) -> int:
    """Print the catalog."""
    types = catalog()
    if args.json:
        print_json([{**it.model_dump(), "short_names": list(it.short_names)} for it in types])
        return 0
    table = Table(title="Instance types (catalog prices; the local provider charges $0.00)")
    for column in ("name", "short names", "GPUs", "GPU memory", "vCPUs", "RAM", "$/h"):
        table.add_column(column, no_wrap=True, justify="right" if column == "$/h" else "left")
    for it in types:
        gpus = f"{it.gpu_count}× {it.gpu_model} ({it.interconnect})" if it.gpu_count else "-"
        table.add_row(
            it.name,
            ", ".join(it.short_names),
            gpus,
            f"{it.gpu_memory_gb} GB" if it.gpu_count else "-",
            str(it.vcpus),
            f"{it.ram_gb} GB",
            f"${it.price_per_hour:.2f}",
        )
    console.print(table)
    return 0
