"""Fixtures: a fake Mithril on loopback and a client whose traffic is checked against the spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mithril_helpers import settings_for
from sshd import SSHServer

from flow_backend import Flow
from flow_backend.providers.mithril import MithrilProvider
from flow_backend.providers.mithril.api import MithrilClient, RetryPolicy
from flow_backend.testing import FakeMithril
from flow_backend.testing.openapi_check import RecordingTransport, SpecChecker
from flow_backend.testing.pytest_plugin import fake_mithril

__all__ = ["fake_mithril"]  # the shipped fixture, used by test_fixture_helper.py

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05, max_retry_after=2.0)


@pytest.fixture(autouse=True)
def remote_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Task folders of the fake's instances go to tmp_path, not /var/tmp."""
    root = tmp_path / "remote"
    monkeypatch.setenv("FLOW_MITHRIL_REMOTE_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def spec_checker() -> SpecChecker:
    return SpecChecker()


@pytest.fixture
def fake(tmp_path: Path, spec_checker: SpecChecker) -> Iterator[FakeMithril]:
    """A fake Mithril with short delays; every response it gave is checked against the spec."""
    with FakeMithril(
        tmp_path / "fake",
        provisioning_delay=0.1,
        boot_delay=0.1,
        preemption_grace=0.3,
        ssh_ready_delay=0.2,
        record_traffic=True,
    ) as server:
        yield server
        problems = spec_checker.problems_in(
            [exchange for exchange in server.exchanges if exchange.status != 422]
        )
        assert not problems, "fake Mithril answered outside the spec:\n" + "\n".join(problems)


@pytest.fixture
def recorder() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait the client's transport asked for (instead of sleeping)."""
    return []


@pytest.fixture
def client(
    fake: FakeMithril, recorder: RecordingTransport, spec_checker: SpecChecker, sleeps: list[float]
) -> Iterator[MithrilClient]:
    """A client of ``fake`` whose requests (and the responses) are all checked against the spec.

    Waits between retries are recorded in ``sleeps`` and skipped, so fault tests stay fast.
    """
    with MithrilClient(
        fake.api_key,
        fake.url,
        timeout=5.0,
        retry=FAST_RETRY,
        transport=recorder,
        sleep=sleeps.append,
    ) as api:
        yield api
    problems = spec_checker.problems_in(
        [exchange for exchange in recorder.exchanges if exchange.status != 422]
    )
    assert not problems, "client traffic outside the spec:\n" + "\n".join(problems)


@pytest.fixture
def cloud(tmp_path: Path, sshd: SSHServer, spec_checker: SpecChecker) -> Iterator[FakeMithril]:
    """A fake whose instances report the loopback sshd; checks billing and spec afterwards."""
    with FakeMithril(
        tmp_path / "fake",
        ssh_destination=sshd.destination,
        provisioning_delay=0.1,
        boot_delay=0.1,
        preemption_grace=0.3,
        ssh_ready_delay=0.2,
        record_traffic=True,
    ) as fake:
        yield fake
        assert fake.billing_instances() == [], "a test left an instance billing"
        problems = spec_checker.problems_in(fake.exchanges)
        assert not problems, "fake Mithril answered outside the spec:\n" + "\n".join(problems)


@pytest.fixture
def cloud_flow(
    cloud: FakeMithril, sshd: SSHServer, tmp_path: Path, spec_checker: SpecChecker
) -> Iterator[Flow]:
    """A Flow client on the fake; all its API traffic is checked against the spec afterwards."""
    recorder = RecordingTransport()
    api = MithrilClient(cloud.api_key, cloud.url, transport=recorder)
    settings = settings_for(cloud, sshd, tmp_path / "flow-home")
    with Flow(MithrilProvider(settings, client=api)) as client:
        yield client
    problems = spec_checker.problems_in(recorder.exchanges)
    assert not problems, "provider traffic outside the spec:\n" + "\n".join(problems)
