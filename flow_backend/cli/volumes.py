"""``flow volumes list|create|delete``: persistent volumes of the provider."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from flow_backend.cli._common import client_from, console, print_json

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``volumes`` with its ``list``, ``create`` and ``delete`` actions."""
    volumes = subparsers.add_parser("volumes", help="list, create or delete volumes")
    actions = volumes.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list volumes")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=list_command)
    create = actions.add_parser("create", help="create a volume")
    create.add_argument("name")
    create.add_argument("--size", type=float, default=0.0, metavar="GB", help="size in GB")
    create.set_defaults(func=create_command)
    delete = actions.add_parser("delete", help="delete a volume and its data")
    delete.add_argument("name")
    delete.set_defaults(func=delete_command)


def list_command(args: argparse.Namespace) -> int:
    """Print the volumes."""
    with client_from(args) as client:
        found = client.provider.list_volumes()
    if args.json:
        print_json([{"name": v.name, "size_gb": v.size_gb, "location": v.location} for v in found])
        return 0
    table = Table(title=f"{len(found)} volume(s)")
    for column in ("name", "size GB", "location"):
        table.add_column(column, no_wrap=True)
    for volume in found:
        table.add_row(volume.name, f"{volume.size_gb:g}", volume.location)
    console.print(table)
    return 0


def create_command(args: argparse.Namespace) -> int:
    """Create a volume."""
    with client_from(args) as client:
        volume = client.provider.create_volume(args.name, args.size)
    console.print(f"Volume {volume.name} at {volume.location}")
    return 0


def delete_command(args: argparse.Namespace) -> int:
    """Delete a volume."""
    with client_from(args) as client:
        client.provider.delete_volume(args.name)
    console.print(f"Deleted volume {args.name}")
    return 0
