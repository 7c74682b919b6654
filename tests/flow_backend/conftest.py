"""Fixtures for the flow_backend tests: an isolated FLOW_HOME and config file per test.

Not autouse, so the mithril/ and ssh/ test packages below keep their own set-up; the local tests
opt in with ``pytestmark = pytest.mark.usefixtures("flow_home")`` or by using ``flow``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_backend import Flow

#: Settings that make local tests quick: a short SIGTERM→SIGKILL grace, quick polling.
FAST_ENV = {"FLOW_STOP_GRACE_SECONDS": "1", "FLOW_POLL_INTERVAL": "0.1"}


@pytest.fixture
def flow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FLOW_HOME and FLOW_CONFIG_PATH inside tmp_path; no GPUs; provider from the defaults."""
    home = tmp_path / "flow-home"
    monkeypatch.setenv("FLOW_HOME", str(home))
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "flow-config.yaml"))
    monkeypatch.setenv("FLOW_LOCAL_GPUS", "")
    for name, value in FAST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("FLOW_PROVIDER", "MITHRIL_API_KEY", "MITHRIL_PROJECT", "MITHRIL_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MITHRIL_API_URL", raising=False)
    return home


@pytest.fixture
def flow(flow_home: Path) -> Iterator[Flow]:
    """A local client; every task still live at the end of the test is stopped."""
    client = Flow()
    yield client
    for task in client.list_tasks(active_only=True):
        client.cancel(task.task_id)
    client.close()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_at_default_mount_paths(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Fail the session if a test linked a volume at the host's real ``/volumes/<name>``.

    Tests mount volumes under their tmp_path; a link from ``/volumes`` into this session's temp
    folder means one did not (other processes' entries there are not ours to judge).
    """
    yield
    ours = str(tmp_path_factory.getbasetemp().resolve())
    root = Path("/volumes")
    if not root.is_dir():
        return
    leaked = [
        str(entry)
        for entry in root.iterdir()
        if entry.is_symlink() and os.path.realpath(entry).startswith(ours + os.sep)
    ]
    assert not leaked, f"tests linked volumes at the host's mount paths: {leaked}"
