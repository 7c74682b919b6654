"""Helpers shared by the ``flow`` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from flow_backend.client import Flow
from flow_backend.models import TaskRecord

__all__ = ["client_from", "console", "error_console", "print_json", "record_json"]

# Piped output (tests, scripts) gets wide lines instead of wrapped table cells.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
error_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def client_from(args: argparse.Namespace) -> Flow:
    """A client for the provider chosen by ``--provider`` (else by the settings)."""
    return Flow(provider=getattr(args, "provider", None))


def record_json(record: TaskRecord) -> dict[str, Any]:
    """A task record as plain JSON data (with ``total_cost`` added)."""
    data = record.model_dump(mode="json")
    data["total_cost"] = round(record.total_cost, 4)
    return data


def print_json(data: Any) -> None:
    """Print JSON to stdout without any styling."""
    print(json.dumps(data, indent=2))
