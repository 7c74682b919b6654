"""Hydra's launcher and batched-sweeper suites with ``hydra.launcher.provider=mithril`` against the
fake Mithril (the batched suite: one sweep of two launches, ~10 s).

The jobs of every suite test run on at most two warm workers (``reuse_workers``, the default), each
a spot bid on the fake whose instance runs the jobs over the loopback sshd in the uploaded launch
dir, one after another; each job's output folder and result come home.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, LauncherTestSuite
from sshd import SSHServer

from flow_backend.testing import FakeMithril
from flow_backend.testing.pytest_plugin import fake_mithril

__all__ = ["fake_mithril"]

MITHRIL = [
    "hydra.launcher.provider=mithril",
    "hydra.launcher.instance=a100",  # Mithril has GPU types only and no default type
    f"hydra.launcher.python={sys.executable}",  # the loopback host's python with hydra installed
    "hydra.launcher.poll_interval=0.2",
    "hydra.launcher.max_parallel=2",  # a sweep of three jobs reuses a worker
]


@pytest.fixture
def on_fake_mithril(
    fake_mithril: FakeMithril, sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeMithril]:
    """The fake, and a launch dir of its own (the uploaded code), apart from the remote root."""
    launch = tmp_path / "launch"
    launch.mkdir()
    monkeypatch.chdir(launch)
    yield fake_mithril
    assert fake_mithril.billing_instances() == [], "a suite test left an instance billing"
    names = [bid["name"] for bid in fake_mithril.bids()]
    assert all(name.rsplit("-", 1)[1] in ("w0", "w1") for name in names), names  # workers


@pytest.mark.usefixtures("on_fake_mithril")
@pytest.mark.parametrize("launcher_name, overrides", [("flow", MITHRIL)])
class TestFlowLauncherOnMithril(LauncherTestSuite):
    """Results, configs and output dirs as after a basic-launcher run, with every job remote."""


@pytest.mark.usefixtures("on_fake_mithril")
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [("flow", [*MITHRIL, "hydra/sweeper=flow", "hydra.sweeper.max_batch_size=2"])],
)
class TestFlowSweeperBatchesOnMithril(BatchedSweeperTestSuite):
    """Two batches of two jobs through the flow sweeper, every job remote on warm workers."""
