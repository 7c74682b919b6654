"""The API key never appears in logs, reprs or exceptions."""

from __future__ import annotations

import logging
import traceback

import pytest

from flow_backend.errors import AuthenticationError, ProviderError
from flow_backend.providers.mithril.api import MithrilClient, RetryPolicy
from flow_backend.providers.mithril.api.auth import BearerAuth
from flow_backend.testing import FakeMithril


def test_key_is_absent_from_debug_logs_of_success_retries_and_failures(
    fake: FakeMithril, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpcore, ours and the fake's loggers, all of them
    caplog.set_level(logging.DEBUG, logger="httpx")  # quiet by default; opened up here
    with MithrilClient(
        fake.api_key, fake.url, retry=RetryPolicy(max_attempts=2), sleep=lambda _: None
    ) as api:
        api.list_projects()
        fake.faults.fail_next(1, status=503)
        api.list_projects()
        fake.faults.fail_next(2, status=500)
        with pytest.raises(ProviderError):
            api.list_projects()
    with MithrilClient(fake.api_key + "x", fake.url) as wrong, pytest.raises(AuthenticationError):
        wrong.list_projects()
    assert any("retry" in record.getMessage() for record in caplog.records)
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)  # httpx logged
    assert fake.api_key not in caplog.text
    assert fake.api_key[5:] not in caplog.text  # not even the part after "fkey_"


def test_key_is_absent_from_reprs_and_exceptions(fake: FakeMithril) -> None:
    key = fake.api_key
    api = MithrilClient(key + "x", fake.url)
    try:
        assert key not in repr(api)
        assert key not in repr(BearerAuth(key)) and key not in str(BearerAuth(key).__dict__)
        assert key not in repr(fake)
        with pytest.raises(AuthenticationError) as caught:
            api.list_projects()
        text = "".join(traceback.format_exception(caught.value))
        assert key not in text and key not in repr(caught.value.__dict__)
        assert (caught.value.__cause__ is None and caught.value.__context__ is None) or (
            key not in repr(caught.value.__context__)
        )
    finally:
        api.close()


def test_headers_of_a_sent_request_are_masked_in_their_repr(fake: FakeMithril) -> None:
    seen: list[str] = []

    def hook(request: object) -> None:
        seen.append(repr(request.headers))  # type: ignore[attr-defined]

    with MithrilClient(fake.api_key, fake.url) as api:
        api._http.event_hooks["request"].append(hook)
        api.list_projects()
    assert seen and all(fake.api_key not in text for text in seen)
    assert "[secure]" in seen[0]


def test_key_echoed_by_the_server_is_not_quoted(client: MithrilClient, fake: FakeMithril) -> None:
    fake.faults.fail_next(1, status=403, detail=f"key {fake.api_key} may not use this project")
    with pytest.raises(AuthenticationError) as caught:
        client.list_projects()
    text = "".join(traceback.format_exception(caught.value)) + repr(caught.value.__dict__)
    assert "may not use this project" in text and "**********" in text
    assert fake.api_key not in text and fake.api_key[5:] not in text
