"""The shipped ``fake_mithril`` fixture points settings at the fake for one test."""

from __future__ import annotations

from pathlib import Path

from flow_backend import Flow, TaskConfig
from flow_backend.models import TaskStatus
from flow_backend.providers.mithril.api import MithrilClient
from flow_backend.settings import load_settings
from flow_backend.testing import FakeMithril


def test_fixture_sets_the_environment_for_settings(fake_mithril: FakeMithril) -> None:
    settings = load_settings(provider="mithril")
    assert settings.mithril_api_url == fake_mithril.url
    assert settings.mithril_project == "default"
    assert settings.mithril_api_key is not None
    with MithrilClient(settings.mithril_api_key, settings.mithril_api_url) as api:
        assert [p.fid for p in api.list_projects()] == [fake_mithril.project_fid]


def test_fixture_runs_tasks_end_to_end_with_the_sessions_sshd(
    fake_mithril: FakeMithril, tmp_path: Path
) -> None:
    with Flow(provider="mithril", home=tmp_path / "home", poll_interval=0.2) as flow:
        task = flow.run(
            TaskConfig(command="echo via-fixture", instance_type="a100", upload_code=False)
        )
        task.wait(timeout=60)
        assert task.status == TaskStatus.COMPLETED
        assert task.logs() == "via-fixture\n"
    assert fake_mithril.billing_instances() == []
