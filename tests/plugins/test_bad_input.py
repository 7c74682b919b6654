"""Bad launcher input: one clear message naming the field and value, nothing launched."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import HydraException
from hydra.test_utils.test_utils import TSweepRunner
from launcher_helpers import APPS, RunApp, started_tasks
from omegaconf import DictConfig

from flow_backend.instance_types import parse_instance_type
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._plan import check_budget, format_plan, make_plan

APP = APPS / "behaviour_app.py"


def _nothing_launched(tmp_path: Path) -> None:
    assert not started_tasks(), "a task was started"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("hydra.launcher.max_parallel=0", "hydra.launcher.max_parallel=0 is invalid"),
        ("hydra.launcher.max_parallel=-3", "hydra.launcher.max_parallel=-3 is invalid"),
        ("hydra.launcher.poll_interval=0", "hydra.launcher.poll_interval=0.0 is invalid"),
        ("hydra.launcher.max_retries=-1", "hydra.launcher.max_retries=-1 is invalid"),
        ("hydra.launcher.provider=nope", "hydra.launcher.provider='nope'"),
        ("hydra.launcher.max_run_time_hours=500", "max_run_time_hours must be in (0, 168]"),
        (
            "hydra.launcher.python=/nonexistent/python",
            "hydra.launcher.python='/nonexistent/python' is invalid: no executable interpreter",
        ),
    ],
)
def test_bad_launcher_values_give_one_clear_message(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner, override: str, expected: str
) -> None:
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=lambda cfg: 1,
        config_path="configs",
        config_name="compose.yaml",
        overrides=["hydra/launcher=flow", override, "+a=1,2"],
        temp_dir=tmp_path,
    )
    with pytest.raises(FlowLauncherError) as raised, sweep:
        pass
    assert expected in str(raised.value)
    _nothing_launched(tmp_path)


def test_bad_value_on_the_command_line_prints_only_the_message(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(APP, "-m", "hydra/launcher=flow", "hydra.launcher.max_parallel=0", "value=1,2")
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "hydra.launcher.max_parallel=0 is invalid: it must be greater than 0 (or null for the "
        "default). Set e.g. hydra.launcher.max_parallel=4"
    )
    assert "Traceback" not in proc.stderr
    _nothing_launched(tmp_path)


def test_bad_sweeper_batch_size(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(
        APP, "-m", "hydra/launcher=flow", "hydra/sweeper=flow", "hydra.sweeper.max_batch_size=0"
    )
    assert proc.returncode == 1
    assert "hydra.sweeper.max_batch_size=0 is invalid" in proc.stderr
    assert "Traceback" not in proc.stderr
    _nothing_launched(tmp_path)


def test_unknown_instance_option_lists_the_valid_ones(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(APP, "-m", "hydra/launcher=flow", "hydra/launcher/instance=nope")
    assert proc.returncode == 1
    assert "Could not find 'hydra/launcher/instance/nope'" in proc.stderr
    assert "Available options in 'hydra/launcher/instance'" in proc.stderr
    assert "4xa100" in proc.stderr and "h100" in proc.stderr
    proc = run_app(APP, "-m", "hydra/launcher=flow", "+flow/instance=a100,nope")
    assert proc.returncode == 1
    assert "Available options in 'flow/instance'" in proc.stderr
    _nothing_launched(tmp_path)


def test_sweeping_the_launcher_instance_is_refused_by_hydra(run_app: RunApp) -> None:
    proc = run_app(APP, "-m", "hydra/launcher=flow", "hydra/launcher/instance=a100,h100")
    assert proc.returncode == 1
    assert "Sweeping over Hydra's configuration is not supported" in proc.stderr


def test_unpicklable_task_function_fails_before_any_task_starts(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    lock = threading.Lock()

    def task(cfg: DictConfig) -> Any:
        with lock:
            return 1

    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=task,
        config_path="configs",
        config_name="compose.yaml",
        overrides=["hydra/launcher=flow", "+a=1,2"],
        temp_dir=tmp_path,
    )
    with pytest.raises(HydraException, match="cannot be pickled") as raised, sweep:
        pass
    assert "Nothing was launched" in str(raised.value)
    assert "lock" in str(raised.value)
    _nothing_launched(tmp_path)


def test_max_total_cost_refuses_with_the_numbers() -> None:
    options = LauncherOptions.from_params({"max_total_cost": 10.0, "max_run_time_hours": 2.0})
    jobs = [(0, ["lr=0.1"], "a100"), (1, ["lr=0.01"], "a100"), (2, ["lr=0.001"], "h100")]
    rows = make_plan(jobs, options, lambda name: parse_instance_type(name).price_per_hour)
    a100 = parse_instance_type("a100").price_per_hour
    h100 = parse_instance_type("h100").price_per_hour
    worst = 2 * a100 * 2 + h100 * 2
    with pytest.raises(FlowLauncherError) as raised:
        check_budget(rows, options)
    message = str(raised.value)
    assert f"worst-case cost ${worst:,.2f}" in message
    assert f"2 × a100 at ${a100:,.2f}/h × 2 h" in message
    assert "hydra.launcher.max_total_cost=$10.00" in message
    plan = format_plan(rows, "mithril")
    assert f"Total worst-case cost: ${worst:,.2f}" in plan


def test_a_free_plan_still_shows_the_gpu_hours_it_asks_for() -> None:
    options = LauncherOptions.from_params({"max_run_time_hours": 2.0, "num_instances": 2})
    rows = make_plan([(0, [], "4xa100"), (1, [], "a100"), (2, [], "cpu")], options, lambda _: 0.0)
    plan = format_plan(rows, "slurm")
    assert "Total worst-case cost: $0.00" in plan
    assert "GPU-hours requested at most: 20.0 (10 GPU(s) in all)" in plan  # (4 + 1) × 2 nodes × 2 h
    unbounded = make_plan([(0, [], "a100")], LauncherOptions.from_params({}), lambda _: 0.0)
    assert "GPU-hours requested at most: unbounded" in format_plan(unbounded, "slurm")


def test_max_total_cost_without_time_limit_is_unbounded() -> None:
    options = LauncherOptions.from_params({"max_total_cost": 100.0})
    rows = make_plan([(0, [], "a100")], options, lambda name: 1.0)
    with pytest.raises(FlowLauncherError, match="worst case is unbounded"):
        check_budget(rows, options)


def test_free_local_plan_passes_any_budget(tmp_path: Path, run_app: RunApp) -> None:
    proc = run_app(APP, "-m", "hydra/launcher=flow", "hydra.launcher.max_total_cost=0", "value=1,2")
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("multirun/*/*/.flow/*/result.pkl"))) == 2


def test_mithril_without_a_key_is_one_message_naming_the_key(
    tmp_path: Path, run_app: RunApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MITHRIL_API_KEY", "MITHRIL_PROJECT", "MITHRIL_API_URL"):
        monkeypatch.delenv(name, raising=False)
    proc = run_app(
        APP,
        "-m",
        "hydra/launcher=flow",
        "hydra.launcher.provider=mithril",
        "hydra.launcher.dry_run=true",
        "value=1,2",
    )
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("hydra.launcher.provider=mithril: No Mithril API key is set")
    assert "Set MITHRIL_API_KEY" in first
    assert "Traceback" not in proc.stderr
    _nothing_launched(tmp_path)


def test_the_plan_shows_each_jobs_gpus() -> None:
    options = LauncherOptions.from_params({"max_run_time_hours": 1.0})
    jobs = [(0, ["lr=0.1"], "a100"), (1, ["lr=0.1"], "h100"), (2, [], "cpu")]
    plan = format_plan(make_plan(jobs, options, lambda _: 1.0), "mithril").splitlines()
    assert plan[1].split() == [
        "job",
        "overrides",
        "instance",
        "type",
        "GPUs",
        "$/h",
        "worst",
        "case",
    ]
    assert plan[2].split()[2:5] == ["a100", "1", "GPU"]
    assert plan[3].split()[2:5] == ["h100", "8", "GPUs"]  # a $25/h job, not a $3/h one
    assert plan[4].split()[1:4] == ["(none)", "cpu", "-"]
    two_nodes = LauncherOptions.from_params({"num_instances": 2})
    assert "16 GPUs" in format_plan(make_plan(jobs[1:2], two_nodes, lambda _: 1.0), "mithril")


def test_the_progress_table_shows_each_jobs_gpus() -> None:
    import io
    from dataclasses import dataclass

    from hydra_plugins.hydraflow_plugins._progress import Progress

    @dataclass
    class View:
        num: int
        instance_type: str
        gpus: int
        overrides_text: str = "lr=0.1"
        task_id: str = "t"
        status_text: str = "running"

        def elapsed_seconds(self) -> float:
            return 1.0

        def cost_text(self) -> str:
            return "$0.01"

    stream = io.StringIO()
    with Progress([View(0, "a100", 1), View(1, "h100", 8)], stream=stream, live=False) as shown:
        shown.update()
        shown.summary()
    lines = stream.getvalue().splitlines()
    assert "a100  1 GPU  running" in lines[0] and "h100  8 GPUs  running" in lines[1]
    summary = stream.getvalue().split("flow launcher: 2 job(s)")[1]
    assert "gpus" in summary and "1 GPU" in summary and "8 GPUs" in summary
