"""The ``flow`` command line: ``flow run|status|logs|cancel|ssh|volumes|instance-types``.

Every module of this package whose name does not start with ``_`` and that defines
``register(subparsers)`` adds its subcommands, so another part can add a command by adding a module.
A subcommand's parser sets ``func=handler``; the handler takes the parsed arguments and returns the
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import pydantic

from flow_backend._pydantic_errors import to_flow_error
from flow_backend.errors import FlowError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``flow`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="flow",
        description="Run commands as tasks on GPU instances (local, mithril, ssh, slurm).",
    )
    parser.add_argument(
        "--provider", help="provider to use (local, mithril, ssh, slurm); default: the settings"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flow`` command line; returns the exit code (errors: one line on stderr, 1)."""
    # Notes such as "no GPUs: running on the CPU" reach the user through the task's message.
    logging.getLogger("flow_backend").addHandler(logging.NullHandler())
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
    except FlowError as error:
        print(f"flow: error: {error}", file=sys.stderr)
        return 1
    except pydantic.ValidationError as error:
        print(f"flow: error: {to_flow_error(error, where='input')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as error:
        print(
            f"flow: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
