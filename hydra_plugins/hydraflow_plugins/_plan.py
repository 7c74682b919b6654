"""The launch plan: which job runs on which instance type, at what price, and the worst case.

``dry_run=true`` prints it and launches nothing; ``max_total_cost`` refuses a plan whose worst case
(price × ``max_run_time_hours`` per job, summed) is above it.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hydra_plugins.hydraflow_plugins._options import (
    FlowLauncherError,
    LauncherOptions,
    invalid_value,
)

if TYPE_CHECKING:
    from flow_backend.providers.base import Provider

__all__ = [
    "PlanRow",
    "bid_prices",
    "check_budget",
    "check_local_python",
    "check_volumes",
    "format_plan",
    "gpus_text",
    "make_plan",
    "task_gpus",
    "task_price",
    "worst_case",
]


@dataclass(frozen=True)
class PlanRow:
    """One job of the plan."""

    job_num: int
    overrides: tuple[str, ...]
    instance_type: str
    price_per_hour: float
    max_run_time_hours: float | None
    gpus: int = 0  # GPUs the job's task asks for (per instance × instances)

    @property
    def worst_case_cost(self) -> float:
        """Price × run-time limit; infinite when a paid job has no limit."""
        return worst_case(self.price_per_hour, self.max_run_time_hours)


def worst_case(price_per_hour: float, max_run_time_hours: float | None) -> float:
    """What a job may cost at most: price × run-time limit; infinite when a paid job has no limit."""
    if not price_per_hour:
        return 0.0
    if max_run_time_hours is None:
        return math.inf
    return price_per_hour * max_run_time_hours


def bid_prices(provider: Provider, options: LauncherOptions) -> Callable[[str], float]:
    """The price per instance-hour the plan, the budget and the jobs count: the most a task may be
    charged. Where the provider bids for capacity, that is the limit price its bid would carry
    (Mithril: the live spot price × 1.25, capped by ``max_price_per_hour``), not the spot price
    of the moment; elsewhere the provider's price."""

    def price_of(instance_type: str) -> float:
        from flow_backend import TaskConfig

        config = TaskConfig(
            command="true",
            instance_type=instance_type,
            max_price_per_hour=options.max_price_per_hour,
            num_instances=options.num_instances,
            upload_code=False,
        )
        limit = provider.limit_price_per_hour(config)
        return provider.price_per_hour(instance_type) if limit is None else limit

    return price_of


def check_volumes(provider: Provider, options: LauncherOptions, tasks_at_once: int) -> None:
    """Refuse, before anything starts, volumes the tasks running at once could not share (on
    Mithril a Block volume attaches to one instance at a time), naming ``hydra.launcher.volumes``."""
    if not options.volumes:
        return
    from flow_backend import TaskConfig
    from flow_backend.errors import FlowError

    try:
        config = TaskConfig(
            command="true",
            volumes=options.volumes,
            num_instances=options.num_instances,
            upload_code=False,
        )
        provider.check_volumes(config, tasks_at_once)
    except FlowError as error:
        raise FlowLauncherError(
            f"hydra.launcher.volumes: {error} (hydra.launcher.max_parallel={tasks_at_once} "
            "runs that many jobs at once)"
        ) from None


def check_local_python(provider: Provider, options: LauncherOptions) -> None:
    """Refuse, before anything starts, a ``hydra.launcher.python`` this machine cannot run when
    the tasks run here (a cluster's or a remote host's interpreter is that machine's business)."""
    if options.python is None or not provider.shares_files or provider.queues_arrays:
        return
    if shutil.which(options.python) is None:
        raise invalid_value(
            "python",
            options.python,
            "no executable interpreter by that name on this machine, where the jobs run",
            "/usr/bin/python3 (or leave it null for the Python running this sweep)",
        )


def task_price(price_per_instance: float, options: LauncherOptions) -> float:
    """The hourly price of one task: every instance it asks for."""
    return price_per_instance * options.num_instances


def task_gpus(instance_type: str, options: LauncherOptions) -> int:
    """The GPUs one job's task asks for: the instance type's, times the instances per task."""
    from flow_backend.instance_types import parse_instance_type

    return parse_instance_type(instance_type).gpu_count * options.num_instances


def gpus_text(gpus: int) -> str:
    """``8 GPUs``, ``1 GPU``, ``-`` (no GPU): how the plan and the progress table show it."""
    return f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "-"


def make_plan(
    jobs: Sequence[tuple[int, Sequence[str], str]],
    options: LauncherOptions,
    price_of: Callable[[str], float],
) -> list[PlanRow]:
    """Plan rows for ``(job_num, overrides, instance_type)`` triples; prices from ``price_of``."""
    prices: dict[str, float] = {}
    rows = []
    for num, overrides, instance_type in jobs:
        if instance_type not in prices:
            prices[instance_type] = task_price(price_of(instance_type), options)
        rows.append(
            PlanRow(
                num,
                tuple(overrides),
                instance_type,
                prices[instance_type],
                options.max_run_time_hours,
                task_gpus(instance_type, options),
            )
        )
    return rows


def total_worst_case(rows: Sequence[PlanRow]) -> float:
    """The sum of every job's worst case."""
    return sum(row.worst_case_cost for row in rows)


def _money(value: float) -> str:
    return "unbounded" if math.isinf(value) else f"${value:,.2f}"


def format_plan(rows: Sequence[PlanRow], provider: str, workers: int | None = None) -> str:
    """The plan as a plain-text table with a total line.

    ``workers``: at most this many warm workers per instance type run the jobs (``None``: one task
    per job); the plan then says how many task starts that takes instead of one per job.
    """
    header = ("job", "overrides", "instance type", "GPUs", "$/h", "worst case")
    lines = [
        (
            f"#{row.job_num}",
            " ".join(row.overrides) or "(none)",
            row.instance_type,
            gpus_text(row.gpus),
            f"${row.price_per_hour:,.2f}",
            _money(row.worst_case_cost),
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [f"Dry run on provider {provider!r}: {len(rows)} job(s), nothing launched."]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    out.extend("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines)
    out.append(f"Total worst-case cost: {_money(total_worst_case(rows))}")
    if any(math.isinf(row.worst_case_cost) for row in rows):
        out.append("(set hydra.launcher.max_run_time_hours to bound the worst case)")
    gpus = sum(row.gpus for row in rows)
    if gpus:  # what a cluster's allocation counts, even where nothing is billed (slurm)
        hours = rows[0].max_run_time_hours
        requested = "unbounded" if hours is None else f"{gpus * hours:,.1f}"
        out.append(f"GPU-hours requested at most: {requested} ({gpus} GPU(s) in all)")
    if workers is not None:
        per_type: dict[str, int] = {}
        for row in rows:
            per_type[row.instance_type] = per_type.get(row.instance_type, 0) + 1
        starts = sum(min(workers, count) for count in per_type.values())
        out.append(
            f"Warm workers: at most {workers} per instance type, {starts} task start(s) instead "
            f"of {len(rows)} (hydra.launcher.reuse_workers=false: one task per job)"
        )
    return "\n".join(out)


def check_budget(rows: Sequence[PlanRow], options: LauncherOptions) -> None:
    """Refuse a plan whose worst case exceeds ``max_total_cost``, with the numbers."""
    if options.max_total_cost is None:
        return
    worst = total_worst_case(rows)
    if worst <= options.max_total_cost:
        return
    if math.isinf(worst):
        raise FlowLauncherError(
            f"hydra.launcher.max_total_cost={options.max_total_cost} cannot be guaranteed: "
            f"{len(rows)} paid job(s) have no run-time limit, so the worst case is unbounded. "
            "Set hydra.launcher.max_run_time_hours (e.g. 2) or drop max_total_cost"
        )
    by_type: dict[str, list[PlanRow]] = {}
    for row in rows:
        by_type.setdefault(row.instance_type, []).append(row)
    detail = "; ".join(
        f"{len(group)} × {name} at ${group[0].price_per_hour:,.2f}/h × "
        f"{options.max_run_time_hours:g} h"
        for name, group in by_type.items()
    )
    raise FlowLauncherError(
        f"Refusing to launch: the worst-case cost ${worst:,.2f} ({detail}) exceeds "
        f"hydra.launcher.max_total_cost=${options.max_total_cost:,.2f}. Raise max_total_cost, "
        "lower max_run_time_hours, choose a cheaper instance type, or run fewer jobs "
        "(hydra.launcher.dry_run=true shows the plan)"
    )
