"""Hydra's own launcher/sweeper test suites, run against ``hydra/launcher=flow`` (local provider)."""

from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher
from hydra_plugins.hydraflow_plugins.flow_sweeper import FlowSweeper


def test_discovery() -> None:
    assert FlowLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]
    assert FlowSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


@pytest.mark.parametrize("launcher_name, overrides", [("flow", [])])
class TestFlowLauncher(LauncherTestSuite):
    """Hydra's launcher suite: results, configs and output dirs as after a basic-launcher run."""


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [("flow", ["hydra/sweeper=flow", "hydra.sweeper.max_batch_size=2"])],
)
class TestFlowSweeperBatches(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite with the flow sweeper on the flow launcher."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": "flow"},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m"],
        )
    ],
)
class TestFlowLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: real app processes launching through the flow launcher."""
