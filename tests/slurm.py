"""A real two-node SLURM cluster for the session (two slurmd on this host), for tests of the
``slurm`` provider.

Use it from any test (the fixture is registered in ``tests/conftest.py``)::

    def test_something(slurm):          # slurm: flow_backend.providers.slurm.cluster.SlurmCluster
        slurm.conf                      # its slurm.conf (the provider's slurm_conf setting)
        slurm.env                       # os.environ + SLURM_CONF, for running sbatch/squeue yourself

It is :func:`flow_backend.providers.slurm.cluster.start_cluster` (munged, slurmctld and slurmd as
root, state under a temporary folder), the same cluster ``flow slurm-cluster`` starts for a demo.
When SLURM cannot start, tests that use it are skipped — or fail with the reason when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_backend.providers.slurm.cluster import SlurmCluster, SlurmUnavailable, start_cluster


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One real SLURM cluster of two nodes for the whole test session (see the module docstring)."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"), nodes=2)
    except (SlurmUnavailable, OSError) as error:
        message = f"cannot start a one-node SLURM cluster for the slurm tests: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        cluster.stop()


def counting_commands(folder: Path, *tools: str) -> Path:
    """Put in ``folder`` a wrapper for each SLURM command in ``tools`` that logs the call (``tool
    args`` a line, to ``folder/calls.log``) and runs the real one; put ``folder`` first on PATH to
    count how a test's code calls SLURM. Returns the log."""
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / "calls.log"
    calls.touch()
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is not installed"
        wrapper = folder / tool
        wrapper.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    return calls
