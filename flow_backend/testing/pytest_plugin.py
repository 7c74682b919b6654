"""A pytest fixture for the fake Mithril, like moto's: enable it in a ``conftest.py`` with

    pytest_plugins = ["flow_backend.testing.pytest_plugin"]

(or import ``fake_mithril`` from here into a conftest). The fixture yields a started
:class:`~flow_backend.testing.FakeMithril` with short delays, its instance folders in ``tmp_path``,
and points ``MITHRIL_API_URL`` / ``MITHRIL_API_KEY`` / ``MITHRIL_PROJECT`` and
``FLOW_MITHRIL_REMOTE_ROOT`` at it for the test's duration. When the test session also has an
``sshd`` fixture (an object with ``destination`` and ``key_path``, like this project's
``tests/sshd.py``), the fake's instances answer SSH as its user (each with an sshd and host key
of its own) and ``FLOW_SSH_KEY_PATH`` is set to its key, so tasks run end to end. It stops the server (and kills every startup script still running)
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_backend.testing.fake_mithril import FakeMithril

__all__ = ["fake_mithril"]


@pytest.fixture
def fake_mithril(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeMithril]:
    """A running fake Mithril API for one test (see the module docstring)."""
    sshd = None
    if "sshd" in request.fixturenames or _has_fixture(request, "sshd"):
        sshd = request.getfixturevalue("sshd")
    with FakeMithril(
        tmp_path / "fake-mithril",
        ssh_destination=sshd.destination if sshd is not None else None,
        provisioning_delay=0.1,
        boot_delay=0.1,
        preemption_grace=0.3,
        ssh_ready_delay=0.2,
    ) as fake:
        for name, value in fake.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FLOW_MITHRIL_REMOTE_ROOT", str(tmp_path / "fake-mithril-remote"))
        if sshd is not None:
            monkeypatch.setenv("FLOW_SSH_KEY_PATH", str(sshd.key_path))
        yield fake


def _has_fixture(request: pytest.FixtureRequest, name: str) -> bool:
    try:
        return bool(request._fixturemanager.getfixturedefs(name, request.node))
    except Exception:  # private pytest API: without it, only an explicitly requested sshd counts
        return False
