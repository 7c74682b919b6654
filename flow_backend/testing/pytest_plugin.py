"""A pytest fixture for the fake Mithril, like moto's: enable it in a ``conftest.py`` with

    pytest_plugins = ["flow_backend.testing.pytest_plugin"]

(or import ``fake_mithril`` from here into a conftest). The fixture yields a started
:class:`~flow_backend.testing.FakeMithril` with short delays, its instance folders in ``tmp_path``,
and points ``MITHRIL_API_URL`` / ``MITHRIL_API_KEY`` / ``MITHRIL_PROJECT`` and
``FLOW_MITHRIL_REMOTE_ROOT`` at it for the test's duration. It stops the server (and kills every
startup script still running) afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_backend.testing.fake_mithril import FakeMithril

__all__ = ["fake_mithril"]


@pytest.fixture
def fake_mithril(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMithril]:
    """A running fake Mithril API for one test (see the module docstring)."""
    with FakeMithril(
        tmp_path / "fake-mithril", provisioning_delay=0.1, boot_delay=0.1, preemption_grace=0.3
    ) as fake:
        for name, value in fake.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FLOW_MITHRIL_REMOTE_ROOT", str(tmp_path / "fake-mithril-remote"))
        yield fake
