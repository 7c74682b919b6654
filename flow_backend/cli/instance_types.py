"""``flow instance-types``: what the provider offers, with GPUs, memory and price per hour.

Locally (and on ssh hosts) that is the catalog; on Mithril the live catalog at current spot prices.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from rich.table import Table

from flow_backend.cli._common import client_from, console, print_json

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``instance-types``."""
    parser = subparsers.add_parser("instance-types", help="list instance types and prices")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=instance_types_command)


def instance_types_command(args: argparse.Namespace) -> int:
    """Print what the provider offers."""
    with client_from(args) as client:
        types = client.provider.instance_types()
        provider = client.settings.provider
    if args.json:
        print_json([{**asdict(it), "short_names": list(it.short_names)} for it in types])
        return 0
    title = (
        "Instance types on Mithril (lowest spot price now, per instance-hour)"
        if provider == "mithril"
        else f"Instance types (catalog prices; the {provider} provider charges $0.00)"
        if provider == "local"
        else f"Instance types (catalog prices) for the {provider} provider"
    )
    table = Table(title=title)
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
