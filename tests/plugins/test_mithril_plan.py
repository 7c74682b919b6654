"""The launcher on Mithril before anything launches: the instance type and the prices of the plan,
against the fake's live catalog and market over real HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.test_utils.test_utils import TSweepRunner

from flow_backend.testing import FakeMithril
from flow_backend.testing.pytest_plugin import fake_mithril
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError

__all__ = ["fake_mithril"]


def _sweep(runner: TSweepRunner, tmp_path: Path, *overrides: str) -> None:
    sweep = runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=lambda cfg: 1,
        config_path="configs",
        config_name="compose.yaml",
        overrides=[
            "hydra/launcher=flow",
            "hydra.launcher.provider=mithril",
            "hydra.launcher.dry_run=true",
            *overrides,
            "+a=1,2",
        ],
        temp_dir=tmp_path,
    )
    with sweep:
        pass


def test_no_instance_type_on_mithril_names_the_group_and_the_live_choices(
    fake_mithril: FakeMithril, tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    with pytest.raises(FlowLauncherError) as raised:
        _sweep(hydra_sweep_runner, tmp_path)
    message = str(raised.value)
    assert "no instance type given" in message and "provider 'mithril' has no default" in message
    assert "hydra/launcher/instance=NAME" in message
    # the live catalog's types (short names), never the local-only cpu/v100/a10
    for name in ("a100", "8xa100", "h100", "h200", "b200"):
        assert name in message.split("one of: ")[1]
    assert "v100" not in message and "a10," not in message
    assert fake_mithril.bids() == []


def test_the_plan_and_budget_count_the_limit_price_the_bid_will_carry(
    fake_mithril: FakeMithril,
    tmp_path: Path,
    hydra_sweep_runner: TSweepRunner,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_mithril.set_spot_price("a100-80gb.sxm.1x", 2.0)  # a bid offers 2.0 × 1.25 = $2.50/h
    budget = ["hydra.launcher.max_run_time_hours=1", "hydra.launcher.max_total_cost=4.5"]
    # at the spot price 2 jobs would fit ($4.00); at the limit price they may cost $5.00
    with pytest.raises(FlowLauncherError, match=r"worst-case cost \$5\.00 .*2\.50/h"):
        _sweep(hydra_sweep_runner, tmp_path, "hydra/launcher/instance=a100", *budget)
    capsys.readouterr()
    # max_price_per_hour caps the bid, and so the plan: 2 × $2.20 fits the budget
    _sweep(
        hydra_sweep_runner,
        tmp_path / "capped",
        "hydra/launcher/instance=a100",
        "hydra.launcher.max_price_per_hour=2.2",
        *budget,
    )
    plan = capsys.readouterr().out
    assert "$2.20" in plan and "Total worst-case cost: $4.40" in plan
    assert fake_mithril.bids() == []


def test_a_block_volume_the_sweeps_parallel_jobs_would_share_is_one_error_before_launch(
    fake_mithril: FakeMithril,
    tmp_path: Path,
    hydra_sweep_runner: TSweepRunner,
    capsys: pytest.CaptureFixture[str],
) -> None:
    block = "hydra.launcher.volumes=[{name:data}]"
    with pytest.raises(FlowLauncherError) as raised:
        _sweep(hydra_sweep_runner, tmp_path, "hydra/launcher/instance=a100", block)
    message = str(raised.value)
    assert message.startswith("hydra.launcher.volumes: volume 'data' is a Block volume")
    assert "2 tasks at once" in message and "File volume" in message
    assert fake_mithril.bids() == [] and fake_mithril.requests_to("/v2/volumes", "POST") == 0
    # one job at a time may use it; a File volume may be shared
    _sweep(
        hydra_sweep_runner,
        tmp_path / "one",
        "hydra/launcher/instance=a100",
        block,
        "hydra.launcher.max_parallel=1",
    )
    shared = "hydra.launcher.volumes=[{name:data,interface:file}]"
    _sweep(hydra_sweep_runner, tmp_path / "file", "hydra/launcher/instance=a100", shared)
    assert capsys.readouterr().out.count("Dry run") == 2
