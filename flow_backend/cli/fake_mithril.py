"""``flow fake-mithril``: run the fake Mithril API (:mod:`flow_backend.testing`) for a demo.

The fake server (and the Mithril client it shares models with) is imported only when the
subcommand runs, so it adds nothing to the start-up of every other ``flow`` command.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_arguments", "register", "run_command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the fake server's command line."""
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    parser.add_argument("--api-key", default=None, help="key clients must send (default: random)")
    parser.add_argument(
        "--work-dir", default=None, help="where instance folders go (default: temp)"
    )
    parser.add_argument(
        "--ssh-destination",
        default=None,
        help="user@host:port of an sshd: instances answer SSH as that user, each with an sshd and "
        "host key of its own (needed to run tasks end to end)",
    )
    parser.add_argument(
        "--provisioning-delay", type=float, default=1.0, help="seconds a bid stays Open (default 1)"
    )


def register(subparsers: Any) -> None:
    """Add ``fake-mithril``."""
    parser = subparsers.add_parser(
        "fake-mithril", help="run a fake Mithril API on loopback that runs tasks locally"
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C."""
    from flow_backend.testing.__main__ import serve

    return serve(args)
