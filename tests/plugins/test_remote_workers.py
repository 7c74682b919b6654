"""Which launches run on warm workers: chosen once, from what the provider can do.

The sweeps themselves run in ``test_remote_mithril.py``, ``test_remote_faults.py``,
``test_remote_hydra_suite.py`` and ``tests/flow_backend/ssh/test_ssh_sweep.py``.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from flow_backend.providers.base import Provider
from flow_backend.providers.local.provider import LocalProvider
from flow_backend.providers.mithril.provider import MithrilProvider
from flow_backend.providers.slurm.provider import SlurmProvider
from flow_backend.providers.ssh.provider import SSHProvider
from hydra_plugins.hydraflow_plugins._options import LauncherOptions
from hydra_plugins.hydraflow_plugins._strategy import uses_workers


def _kind(provider: type[Provider], **attributes: Any) -> Provider:
    """The provider's class attributes (what ``uses_workers`` reads), as an instance would have."""
    return cast(Provider, type("P", (provider,), attributes))


@pytest.mark.parametrize(
    ("provider", "workers"),
    [
        (_kind(LocalProvider), True),  # a process tree on this machine
        (_kind(SSHProvider), True),  # a slot on an SSH host
        (_kind(MithrilProvider), True),  # a spot bid
        (_kind(SlurmProvider, shares_files=True), False),  # a job array on the cluster's queue
        (_kind(SlurmProvider, shares_files=False), False),  # over a login node: a task per job
    ],
    ids=["local", "ssh", "mithril", "slurm", "slurm-over-ssh"],
)
def test_warm_workers_run_where_the_provider_can_feed_them(
    provider: Provider, workers: bool
) -> None:
    assert uses_workers(provider, LauncherOptions.from_params({})) is workers
    assert not uses_workers(provider, LauncherOptions.from_params({"reuse_workers": False}))
