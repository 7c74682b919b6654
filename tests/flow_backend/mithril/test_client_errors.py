"""Each failure of the API becomes the right flow_backend error, with the server's words."""

from __future__ import annotations

import socket

import httpx
import pytest
from mithril_helpers import bid_request

from flow_backend.errors import (
    AuthenticationError,
    InsufficientQuotaError,
    PermissionDeniedError,
    ProviderError,
    ResourceNotFoundError,
    ValidationError,
)
from flow_backend.providers.mithril.api import (
    CreateBidRequest,
    CreateSshKeyRequest,
    LaunchSpecification,
    MithrilClient,
    RetryPolicy,
)
from flow_backend.providers.mithril.api.errors import error_for_response
from flow_backend.testing import FakeMithril
from flow_backend.testing.openapi_check import RecordingTransport


def test_a_wrong_key_is_an_authentication_error(fake: FakeMithril) -> None:
    with MithrilClient("fkey_wrong", fake.url) as api, pytest.raises(AuthenticationError) as caught:
        api.list_projects()
    assert "HTTP 401" in str(caught.value) and "MITHRIL_API_KEY" in str(caught.value)
    assert caught.value.field == "mithril_api_key"


@pytest.mark.parametrize("key", [None, "", "   "])
def test_no_key_fails_before_any_request(fake: FakeMithril, key: str | None) -> None:
    with MithrilClient(key, fake.url) as api, pytest.raises(AuthenticationError) as caught:
        api.list_projects()
    assert "No Mithril API key is set" in str(caught.value)
    assert "MITHRIL_API_KEY" in str(caught.value)
    assert sum(fake.request_counts.values()) == 0


def test_a_403_that_says_why_is_quoted_not_blamed_on_the_key(
    client: MithrilClient, fake: FakeMithril
) -> None:
    fake.faults.fail_next(1, status=403, detail="organization limit reached")
    with pytest.raises(PermissionDeniedError) as caught:
        client.create_bid(bid_request(fake))
    message = str(caught.value)
    assert "organization limit reached" in message and "HTTP 403" in message
    assert "MITHRIL_API_KEY" not in message and "API key" not in message
    assert fake.requests_to("/v2/spot/bids", "POST") == 1  # a refusal is not retried
    assert fake.bids() == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(403, json={"detail": ""}),
        httpx.Response(403),
        httpx.Response(403, text="<html><body>403 Forbidden</body></html>"),  # a proxy's page
    ],
    ids=["empty-detail", "no-body", "html"],
)
def test_a_403_without_a_reason_still_points_at_the_key(response: httpx.Response) -> None:
    error = error_for_response(response, what="list projects")
    assert type(error) is AuthenticationError
    assert "MITHRIL_API_KEY" in str(error) and error.field == "mithril_api_key"


def test_the_fake_answers_401_without_a_bearer_key(fake: FakeMithril) -> None:
    response = httpx.get(f"{fake.url}/v2/projects")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()


def test_unknown_bid_is_not_found(client: MithrilClient) -> None:
    with pytest.raises(ResourceNotFoundError, match="bid_doesnotexist"):
        client.get_bid("bid_doesnotexist")
    with pytest.raises(ResourceNotFoundError):
        client.cancel_bid("bid_doesnotexist")


def test_unknown_instance_type_in_a_bid_is_not_found(
    client: MithrilClient, fake: FakeMithril
) -> None:
    with pytest.raises(ResourceNotFoundError, match="it_nope"):
        client.create_bid(bid_request(fake, instance_type="it_nope"))


def test_422_carries_the_servers_detail(client: MithrilClient, fake: FakeMithril) -> None:
    # model_construct skips our own validation so the server is the one to refuse
    bad = CreateBidRequest.model_construct(
        **{**bid_request(fake).__dict__, "instance_quantity": 0, "name": "hf-x-0"}
    )
    with pytest.raises(ValidationError) as caught:
        client.create_bid(bad)
    error = caught.value
    assert error.field == "instance_quantity"
    assert "HTTP 422" in str(error) and "body.instance_quantity" in str(error)
    assert isinstance(error.value, list) and error.value[0]["loc"] == ["body", "instance_quantity"]


def test_422_on_a_startup_script_over_10000_characters(
    client: MithrilClient, fake: FakeMithril
) -> None:
    spec = LaunchSpecification.model_construct(volumes=[], ssh_keys=[], startup_script="#" * 10_001)
    bad = CreateBidRequest.model_construct(
        **{**bid_request(fake).__dict__, "launch_specification": spec}
    )
    with pytest.raises(ValidationError, match="startup_script"):
        client.create_bid(bad)


def test_422_on_a_missing_required_query_parameter(fake: FakeMithril) -> None:
    response = httpx.get(
        f"{fake.url}/v2/instances", headers={"Authorization": f"Bearer {fake.api_key}"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "project"]


def test_quota_exceeded_is_insufficient_quota(client: MithrilClient, fake: FakeMithril) -> None:
    fake.set_quota(2)
    client.create_bid(bid_request(fake, instance_quantity=2))
    with pytest.raises(InsufficientQuotaError, match="quota"):
        client.create_bid(bid_request(fake, name="hf-x-1"))


def test_5xx_after_all_retries_is_a_provider_error(
    client: MithrilClient, fake: FakeMithril, sleeps: list[float]
) -> None:
    fake.faults.fail_next(10, status=502)
    with pytest.raises(ProviderError, match="HTTP 502") as caught:
        client.list_instance_types()
    assert "kept failing after retries" in str(caught.value)
    assert fake.requests_to("/v2/instance-types") == client.retry_policy.max_attempts
    assert len(sleeps) == client.retry_policy.max_attempts - 1


def test_a_5xx_to_a_post_without_idempotency_key_is_not_retried_nor_said_to_be(
    client: MithrilClient, fake: FakeMithril, sleeps: list[float]
) -> None:
    fake.faults.fail_next(1, status=503, retry_after=2)
    with pytest.raises(ProviderError) as caught:
        client.create_ssh_key(CreateSshKeyRequest(project=fake.project_fid, name="laptop"))
    message = str(caught.value)
    assert "HTTP 503" in message and "the server asked to wait 2 s" in message
    assert "retries" not in message  # it was sent once: a second POST could make a second key
    assert fake.requests_to("/v2/ssh-keys", "POST") == 1 and sleeps == []


def test_a_bid_post_is_retried_on_5xx_under_one_idempotency_key(
    client: MithrilClient, fake: FakeMithril, recorder: RecordingTransport
) -> None:
    fake.faults.fail_next(1, status=503)
    bid = client.create_bid(bid_request(fake))
    assert fake.requests_to("/v2/spot/bids", "POST") == 2
    assert [b["fid"] for b in fake.bids()] == [bid.fid]  # one bid, nothing billing twice
    again = client.create_bid(bid_request(fake), idempotency_key="flow-same")
    assert client.create_bid(bid_request(fake), idempotency_key="flow-same").fid == again.fid
    assert len(fake.bids()) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_a_provider_error() -> None:
    sleeps: list[float] = []
    recorder = RecordingTransport()
    url = f"http://127.0.0.1:{_closed_port()}"
    with (
        MithrilClient(
            "fkey_x",
            url,
            retry=RetryPolicy(max_attempts=3),
            transport=recorder,
            sleep=sleeps.append,
        ) as api,
        pytest.raises(ProviderError) as caught,
    ):
        api.create_bid(
            CreateBidRequest(
                project="proj_x",
                region="r",
                instance_type="it_x",
                limit_price=1,
                instance_quantity=1,
                name="n",
                launch_specification=LaunchSpecification(),
            )
        )
    assert len(sleeps) == 2  # a POST is retried when nothing reached the server
    assert "could not connect" in str(caught.value) and url in str(caught.value)
    assert caught.value.field == "mithril_api_url"
