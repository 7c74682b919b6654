"""Fixtures of the slurm provider tests: a Flow client on the session's one-node SLURM cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_backend import Flow
from flow_backend.providers.slurm.cluster import SlurmCluster


@pytest.fixture
def slurm_flow(slurm: SlurmCluster, flow_home: Path) -> Iterator[Flow]:
    """A slurm client on the session's cluster; every task still live at the end is cancelled."""
    client = Flow(provider="slurm", slurm_conf=slurm.conf, poll_interval=0.2)
    yield client
    live = [task.task_id for task in client.list_tasks(active_only=True)]
    if live:
        client.provider.cancel_many(live)
    client.close()
