"""``flow fake-mithril``: run the fake Mithril API (:mod:`flow_backend.testing`) for a demo."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``fake-mithril``."""
    from flow_backend.testing.__main__ import add_arguments

    parser = subparsers.add_parser(
        "fake-mithril", help="run a fake Mithril API on loopback that runs tasks locally"
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C."""
    from flow_backend.testing.__main__ import serve

    return serve(args)
