"""Hydra's own launcher/sweeper test suites, run against ``hydra/launcher=flow`` (local provider)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from launcher_helpers import APPS, INTEGRATION_DEFAULTS, RunApp, started_tasks
from omegaconf import OmegaConf

from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher
from hydra_plugins.hydraflow_plugins.flow_sweeper import FlowSweeper


def test_discovery() -> None:
    assert FlowLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]
    assert FlowSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [("flow", []), ("flow", ["hydra.launcher.reuse_workers=false"])],
    ids=["workers", "per-task"],
)
class TestFlowLauncher(LauncherTestSuite):
    """Hydra's launcher suite: results, configs and output dirs as after a basic-launcher run."""


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("flow", ["hydra/sweeper=flow", "hydra.sweeper.max_batch_size=2"]),
        (
            "flow",
            [
                "hydra/sweeper=flow",
                "hydra.sweeper.max_batch_size=2",
                "hydra.launcher.reuse_workers=false",
            ],
        ),
    ],
    ids=["workers", "per-task"],
)
class TestFlowSweeperBatches(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite with the flow sweeper on the flow launcher."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {"defaults": INTEGRATION_DEFAULTS},
            ["-m"],
        ),
        (
            {"defaults": INTEGRATION_DEFAULTS},
            ["-m", "hydra.launcher.reuse_workers=false"],
        ),
    ],
    ids=["workers", "per-task"],
)
class TestFlowLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: real app processes launching through the flow launcher."""


def test_optuna_sweeper_runs_unchanged_on_the_flow_launcher(
    tmp_path: Path, run_app: RunApp
) -> None:
    proc = run_app(
        APPS / "objective_app.py",
        "-m",
        "hydra/launcher=flow",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "+x=range(0,5)",
    )
    assert proc.returncode == 0, proc.stderr
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    best = OmegaConf.load(results)
    assert len(list(tmp_path.glob("multirun/*/*/.flow/*/result.pkl"))) == 4  # every trial ran
    assert len(started_tasks()) == 4  # each batch of 2 trials on 2 workers
    values = [(x - 2) ** 2 for x in range(5)]
    assert best.best_value in values
