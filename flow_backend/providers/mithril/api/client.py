"""A typed httpx client for the parts of the Mithril API a task needs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter

from flow_backend.errors import AuthenticationError
from flow_backend.providers.mithril.api.auth import BearerAuth
from flow_backend.providers.mithril.api.errors import (
    error_for_response,
    error_for_transport_failure,
)
from flow_backend.providers.mithril.api.models import (
    Auction,
    Bid,
    BidStatus,
    CreateBidRequest,
    CreatedSshKey,
    CreateSshKeyRequest,
    CreateVolumeRequest,
    CurrentPrices,
    Instance,
    InstanceStatus,
    InstanceType,
    Project,
    SshKey,
    Volume,
)
from flow_backend.providers.mithril.api.paging import iterate_pages
from flow_backend.providers.mithril.api.transport import (
    RetryPolicy,
    RetryTransport,
    attempts_of,
    http_date,
)

__all__ = ["DEFAULT_API_URL", "MithrilClient"]

logger = logging.getLogger(__name__)

# httpx logs every request at INFO; apps such as Hydra show INFO, so one line per poll would
# flood their logs. Quiet it unless the application configured the "httpx" logger itself.
_httpx_logger = logging.getLogger("httpx")
if _httpx_logger.level == logging.NOTSET:
    _httpx_logger.setLevel(logging.WARNING)

DEFAULT_API_URL = "https://api.mithril.ai"
ModelT = TypeVar("ModelT", bound=BaseModel)
_DATE_RESOLUTION = timedelta(seconds=2)  # a Date header has whole seconds: less is no offset


class MithrilClient:
    """Calls the Mithril Compute API (``/v2``) with bearer auth, retries and typed results.

    Every failure is raised as a :mod:`flow_backend.errors` class (see
    :mod:`flow_backend.providers.mithril.api.errors`).

    Args:
        api_key: The Mithril API key (``fkey_...``); kept secret in reprs and logs.
        base_url: API root, e.g. ``https://api.mithril.ai`` or a :class:`FakeMithril`'s ``url``.
        timeout: Seconds per request attempt.
        retry: Retry policy of the transport.
        transport: The innermost transport (default ``httpx.HTTPTransport``); tests wrap it to
            record traffic. Retries are layered on top of it.
        sleep: How the transport waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        api_key: SecretStr | str | None,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_policy = retry or RetryPolicy()
        self._auth = BearerAuth(api_key)
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=self._auth,
            timeout=timeout,
            transport=RetryTransport(transport, self.retry_policy, sleep=sleep),
            headers={"Accept": "application/json"},
        )
        self._clock_offset = timedelta(0)

    def server_now(self) -> datetime:
        """Now on the API's clock, which stamps an instance's ``created_at`` (as the SDK's
        ``server_time``): this machine's clock moved by the ``Date`` of the latest response."""
        return datetime.now(UTC) + self._clock_offset

    def __repr__(self) -> str:
        return f"MithrilClient(base_url={self.base_url!r}, api_key=**********)"

    def __enter__(self) -> MithrilClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        body: BaseModel | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if not self._auth.has_key:
            raise AuthenticationError(
                f"No Mithril API key is set, so the client cannot {what}",
                field="mithril_api_key",
                hint="Set MITHRIL_API_KEY (create a key in the Mithril console), "
                "or run `flow fake-mithril` for a local demo",
            )
        query = {key: value for key, value in (params or {}).items() if value is not None}
        content = None
        headers = dict(headers or {})
        if body is not None:
            content = body.model_dump_json(exclude_none=True)
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method, path, params=query, content=content, headers=headers
            )
        except httpx.TransportError as error:
            raise error_for_transport_failure(error, what=what, url=self.base_url) from None
        served = http_date(response.headers.get("date"))
        if served is not None:
            offset = served - datetime.now(UTC)
            self._clock_offset = offset if abs(offset) >= _DATE_RESOLUTION else timedelta(0)
        if response.is_error:
            failure = error_for_response(
                response,
                what=what,
                retry=self.retry_policy,
                redact=self._auth.redact,
            )
            failure.attempts = attempts_of(response)
            raise failure from None
        return response

    def _get_json(self, path: str, *, what: str, params: dict[str, Any] | None = None) -> Any:
        return self._request("GET", path, what=what, params=params).json()

    @staticmethod
    def _list_of(model: type[ModelT], data: Any) -> list[ModelT]:
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]

    # -- account ----------------------------------------------------------------------------
    def list_projects(self) -> list[Project]:
        """Every project the key can use."""
        return self._list_of(Project, self._get_json("/v2/projects", what="list projects"))

    def list_ssh_keys(self, project: str) -> list[SshKey]:
        """SSH keys registered with ``project`` (a ``proj_...`` id)."""
        data = self._get_json("/v2/ssh-keys", what="list SSH keys", params={"project": project})
        return self._list_of(SshKey, data)

    def create_ssh_key(self, request: CreateSshKeyRequest) -> CreatedSshKey:
        """Register a public key (or let the server generate a pair when none is given)."""
        response = self._request(
            "POST", "/v2/ssh-keys", what=f"create SSH key {request.name!r}", body=request
        )
        return CreatedSshKey.model_validate(response.json())

    # -- catalog and market -----------------------------------------------------------------
    def list_instance_types(self) -> list[InstanceType]:
        """Every instance type (``it_...`` ids with their GPU shapes)."""
        data = self._get_json("/v2/instance-types", what="list instance types")
        return self._list_of(InstanceType, data)

    def list_availability(self) -> list[Auction]:
        """Spot capacity and last price of every instance type in every region."""
        data = self._get_json("/v2/spot/availability", what="read spot availability")
        return self._list_of(Auction, data)

    def current_prices(
        self, instance_type: str, *, region: str | None = None, instance_quantity: int = 1
    ) -> CurrentPrices:
        """Current spot / minimum prices (cents) of ``instance_type`` (an ``it_...`` id)."""
        data = self._get_json(
            "/v2/pricing/current",
            what=f"read prices of {instance_type}",
            params={
                "instance_type": instance_type,
                "region": region,
                "instance_quantity": instance_quantity,
            },
        )
        return CurrentPrices.model_validate(data)

    # -- volumes ----------------------------------------------------------------------------
    def list_volumes(self, project: str, *, region: str | None = None) -> list[Volume]:
        """Volumes of ``project`` (deleted ones left out)."""
        data = self._get_json(
            "/v2/volumes", what="list volumes", params={"project": project, "region": region}
        )
        return self._list_of(Volume, data)

    def create_volume(self, request: CreateVolumeRequest) -> Volume:
        """Create a volume; returns it with its ``vol_...`` id."""
        response = self._request(
            "POST", "/v2/volumes", what=f"create volume {request.name!r}", body=request
        )
        return Volume.model_validate(response.json())

    def delete_volume(self, volume_fid: str) -> None:
        """Delete a volume that no live bid uses."""
        self._request("DELETE", f"/v2/volumes/{volume_fid}", what=f"delete volume {volume_fid}")

    # -- spot bids --------------------------------------------------------------------------
    def create_bid(self, request: CreateBidRequest, *, idempotency_key: str | None = None) -> Bid:
        """Place a spot bid (one task); returns it ``Open``.

        Args:
            request: The bid.
            idempotency_key: Sent as ``Idempotency-Key`` (as the official SDK does): the server
                answers a repeated POST with the bid it already made, so the transport may retry
                the POST after a timeout or a 5xx without leaving a second, billing bid.
                Default: a fresh random key per call.
        """
        key = idempotency_key or f"flow-{uuid.uuid4().hex}"
        response = self._request(
            "POST",
            "/v2/spot/bids",
            what=f"create spot bid {request.name!r}",
            body=request,
            headers={"Idempotency-Key": key},
        )
        return Bid.model_validate(response.json())

    def iter_bids(
        self,
        *,
        project: str | None = None,
        status: BidStatus | None = None,
        name: str | None = None,
        instance_type: str | None = None,
        region: str | None = None,
        newest_first: bool = True,
        page_size: int = 100,
    ) -> Iterator[Bid]:
        """Bids matching the filters, page by page (stop iterating to stop fetching)."""
        params = {
            "project": project,
            "status": status,
            "name": name,
            "instance_type": instance_type,
            "region": region,
            "sort_by": "created_at",
            "sort_dir": "desc" if newest_first else "asc",
            "limit": page_size,
        }
        return iterate_pages(
            lambda query: self._get_json("/v2/spot/bids", what="list spot bids", params=query),
            Bid,
            params,
        )

    def list_bids(self, **filters: Any) -> list[Bid]:
        """Every bid matching the filters of :meth:`iter_bids` (all pages)."""
        return list(self.iter_bids(**filters))

    def get_bid(self, bid_fid: str) -> Bid:
        """One bid by id; ``ResourceNotFoundError`` if unknown."""
        data = self._get_json(f"/v2/spot/bids/{bid_fid}", what=f"read spot bid {bid_fid}")
        return Bid.model_validate(data)

    def cancel_bid(self, bid_fid: str) -> None:
        """Cancel a bid: its instances are terminated and stop billing."""
        self._request("DELETE", f"/v2/spot/bids/{bid_fid}", what=f"cancel spot bid {bid_fid}")

    # -- instances --------------------------------------------------------------------------
    def iter_instances(
        self,
        project: str,
        *,
        bid_fids: Sequence[str] | None = None,
        statuses: Sequence[InstanceStatus] | None = None,
        page_size: int = 100,
    ) -> Iterator[Instance]:
        """Instances of ``project``, optionally only those of the given bids / statuses."""
        params = {
            "project": project,
            "bid_fid_in": ",".join(bid_fids) if bid_fids else None,
            "status_in": ",".join(statuses) if statuses else None,
            "sort_by": "created_at",
            "sort_dir": "desc",
            "limit": page_size,
        }
        return iterate_pages(
            lambda query: self._get_json("/v2/instances", what="list instances", params=query),
            Instance,
            params,
        )

    def list_instances(self, project: str, **filters: Any) -> list[Instance]:
        """Every instance matching the filters of :meth:`iter_instances` (all pages)."""
        return list(self.iter_instances(project, **filters))
