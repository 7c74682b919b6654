"""The ``hydraflow`` command: look at runs from the shell.

    hydraflow runs EXPERIMENT [--filter key=value ...] [--sort KEY] [--limit N] [--json|--csv]
    hydraflow plot EXPERIMENT --x KEY --y KEY [--color KEY] -o FILE.png
    hydraflow plot EXPERIMENT --history METRIC [--color KEY] [--band std|minmax|none] [--logy] -o F.png
    hydraflow sweeps [--sweep ID] [--json]       (hydraflow._cli_sweeps)
    hydraflow repair [--sweep ID] [--dry-run]

Subcommands register themselves in :data:`COMMANDS` (a function adding a subparser); another module
can append to it before :func:`main` runs. Errors print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hydraflow._cli_sweeps import register_repair, register_sweeps
from hydraflow.core.errors import HydraflowError

Registrar = Callable[[Any], None]  # receives the subparsers action
COMMANDS: list[Registrar] = []


def _tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="the MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)",
    )


def _parse_filters(items: Sequence[str]) -> dict[str, Any]:
    from hydraflow.conventions import parse_param_value

    conditions: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HydraflowError(
                f"--filter {item!r}: expected KEY=VALUE, e.g. --filter model.type=lstm"
            )
        conditions[key.strip()] = value if key.startswith("tags.") else parse_param_value(value)
    return conditions


def _load(args: argparse.Namespace) -> Any:
    from hydraflow.core.collection import RunCollection

    runs = RunCollection.load(args.experiment, tracking_uri=args.tracking_uri)
    if getattr(args, "filter", None):
        runs = runs.filter(_parse_filters(args.filter))
    return runs


def _table_columns(frame: Any) -> list[str]:
    wanted = ["run_id", "run_name", "status"]
    return wanted + [c for c in frame.columns if c.startswith(("params.", "metrics."))]


def _cmd_runs(args: argparse.Namespace) -> int:
    runs = _load(args)
    if args.sort:
        runs = runs.sort(args.sort, descending=args.desc)
    frame = runs.to_frame()
    if args.limit is not None:
        if args.limit < 0:
            raise HydraflowError(f"--limit {args.limit}: give a number of runs, 0 or more.")
        frame = frame.head(args.limit)
    if args.json:
        sys.stdout.write(frame.write_json() + "\n")
        return 0
    if args.csv:
        sys.stdout.write(frame.write_csv())
        return 0
    from rich.console import Console
    from rich.table import Table

    columns = _table_columns(frame)
    table = Table(title=f"{args.experiment}: {len(frame)} of {len(runs)} runs", header_style="bold")
    for column in columns:
        numeric = frame.schema[column].is_numeric()
        table.add_column(column.removeprefix("params."), justify="right" if numeric else "left")
    for row in frame.select(columns).iter_rows():
        cells = []
        for column, value in zip(columns, row, strict=True):
            if value is None:
                cells.append("")
            elif column == "run_id":
                cells.append(str(value)[:8])
            elif isinstance(value, float):
                cells.append(f"{value:.6g}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    Console(width=None if sys.stdout.isatty() else 250).print(table)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    if args.history and (args.x or args.y):
        raise HydraflowError(
            "give either --history KEY (learning curves) or --x and --y, not both."
        )
    if not args.history and not (args.x and args.y):
        raise HydraflowError(
            "say what to plot: --x KEY --y KEY (one point per run), or --history KEY "
            "(learning curves), e.g. --history loss --color model.type"
        )
    runs = _load(args)
    if args.history:
        path = runs.plot_history(
            args.history,
            color=args.color,
            band=args.band,
            logx=args.logx,
            logy=args.logy,
            path=args.output,
            title=args.title,
        )
    else:
        path = runs.plot(x=args.x, y=args.y, color=args.color, path=args.output, title=args.title)
    print(f"wrote {path} ({len(runs)} runs)")
    return 0


def _register_runs(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="list the runs of an experiment")
    parser.add_argument("experiment")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sort", metavar="KEY")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--limit", type=int, metavar="N")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON records")
    output.add_argument("--csv", action="store_true", help="print CSV")
    _tracking_option(parser)
    parser.set_defaults(handler=_cmd_runs)


def _register_plot(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plot", help="plot one key against another, or learning curves (--history), as a PNG"
    )
    parser.add_argument("experiment")
    parser.add_argument("--x", metavar="KEY")
    parser.add_argument("--y", metavar="KEY")
    parser.add_argument(
        "--history",
        action="append",
        default=[],
        metavar="METRIC",
        help="learning curves of a metric, by step (repeat for a panel per metric)",
    )
    parser.add_argument("--band", choices=["std", "minmax", "none"], default="std")
    parser.add_argument("--logx", action="store_true", help="log x axis (--history)")
    parser.add_argument("--logy", action="store_true", help="log y axis (--history)")
    parser.add_argument("--color", metavar="KEY", help="one series per value of this param")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--title")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.png")
    _tracking_option(parser)
    parser.set_defaults(handler=_cmd_plot)


COMMANDS.extend([_register_runs, _register_plot, register_sweeps, register_repair])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hydraflow", description="Query MLflow runs of Hydra sweeps."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (1 with a one-line message on any hydraflow error)."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (HydraflowError, ValueError, TypeError, OSError) as exc:
        print(f"hydraflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hydraflow: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
