"""Pydantic models of the Mithril API shapes a task needs, field for field as in ``openapi.json``.

Responses ignore unknown fields and keep unknown status values as text (the API evolves: the SDK
already knows ``Replaced`` and ``Relocating``); prices are :data:`Dollars` (float in Python,
``"$12.00"`` on the wire, ``"12.00"`` accepted); timestamps are timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from flow_backend.providers.mithril.api.prices import Dollars

__all__ = [
    "MAX_STARTUP_SCRIPT_CHARS",
    "Auction",
    "Bid",
    "BidStatus",
    "CreateBidRequest",
    "CreateSshKeyRequest",
    "CreateVolumeRequest",
    "CreatedSshKey",
    "CurrentPrices",
    "Instance",
    "InstanceStatus",
    "InstanceType",
    "LaunchSpecification",
    "Page",
    "Project",
    "SshKey",
    "Volume",
]

MAX_STARTUP_SCRIPT_CHARS = 10_000
"""The longest ``startup_script`` the API accepts."""

BidStatus = Literal["Open", "Allocated", "Preempting", "Terminated", "Paused"]
InstanceStatus = Literal[
    "STATUS_NEW",
    "STATUS_CONFIRMED",
    "STATUS_INITIALIZING",
    "STATUS_STARTING",
    "STATUS_RUNNING",
    "STATUS_STOPPING",
    "STATUS_TERMINATED",
    "STATUS_RELOCATING",
    "STATUS_PREEMPTING",
    "STATUS_PREEMPTED",
    "STATUS_REPLACED",
    "STATUS_PAUSED",
    "STATUS_ERROR",
]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_iso, return_type=str, when_used="json")]
"""A datetime written as ``2024-01-01T00:00:00Z``."""


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Project(_ApiModel):
    """``ProjectModel``."""

    fid: str
    name: str
    created_at: Timestamp


class InstanceType(_ApiModel):
    """``InstanceTypeModel``: one machine shape (e.g. 8× H100 80GB SXM)."""

    fid: str
    name: str
    num_cpus: int
    cpu_type: str
    ram_gb: int
    num_gpus: int
    gpu_type: str
    gpu_memory_gb: int
    gpu_socket: str
    local_storage_gb: int
    network_type: str | None = None
    ib_count: int
    bridge_count: int
    hourly_price: float


class Auction(_ApiModel):
    """``AuctionModel``: spot capacity and price of one instance type in one region."""

    fid: str
    instance_type: str
    region: str
    capacity: int
    last_instance_price: Dollars
    lowest_allocated_price: Dollars | None = None
    adjustable_memory: bool
    default_image_version: str | None = None


class CurrentPrices(_ApiModel):
    """``CurrentPricesResponse`` (all prices in cents)."""

    spot_price_cents: int | None = None
    reserved_price_cents: int | None = None
    minimum_price_cents: int | None = None
    lowest_allocated_bid_cents: int | None = None
    dynamic_win_price_cents: int | None = None
    available_capacity: int | None = None
    total_capacity: int | None = None


class LaunchSpecification(_ApiModel):
    """``LaunchSpecificationModel``: what every instance of a bid boots with."""

    volumes: list[str] = Field(default_factory=list)
    ssh_keys: list[str] = Field(default_factory=list)
    startup_script: Annotated[str, Field(max_length=MAX_STARTUP_SCRIPT_CHARS)] | None = None
    kubernetes_cluster: str | None = None
    image_version: str | None = None
    memory_gb: int | None = None


class CreateBidRequest(_ApiModel):
    """``CreateBidRequest``: body of ``POST /v2/spot/bids``."""

    project: str
    region: str
    instance_type: str
    limit_price: Dollars
    instance_quantity: Annotated[int, Field(ge=1)]
    name: Annotated[str, Field(min_length=1)]
    launch_specification: LaunchSpecification
    notification_email: str | None = None


class Bid(_ApiModel):
    """``BidModel``: a spot bid (one task)."""

    fid: str
    name: str
    project: str
    created_by: str
    created_at: Timestamp
    deactivated_at: Timestamp | None = None
    limit_price: Dollars
    instance_quantity: int
    instance_type: str
    region: str | None = None
    instances: list[str]
    launch_specification: LaunchSpecification
    #: One of :data:`BidStatus`, or a value newer than the spec (``Replaced``, ``Relocating``):
    #: kept as text so a poll never fails on it (the provider decides what it means).
    status: BidStatus | str


class Instance(_ApiModel):
    """``InstanceModel``: one machine of a bid."""

    fid: str
    name: str
    project: str
    created_at: Timestamp
    created_by: str
    instance_type: str
    region: str | None = None
    bid: str | None = None
    reservation: str | None = None
    ssh_destination: str | None = None
    private_ip: str | None = None
    #: One of :data:`InstanceStatus`, or a newer value kept as text.
    status: InstanceStatus | str


class Volume(_ApiModel):
    """``VolumeModel``."""

    fid: str
    name: str
    region: str
    created_at: Timestamp
    deleted_at: Timestamp | None
    capacity_gb: int
    project: str
    interface: Literal["Block", "File"]
    bids: list[str]
    reservations: list[str]
    attachments: dict[str, str]


class CreateVolumeRequest(_ApiModel):
    """``CreateVolumeRequest``: body of ``POST /v2/volumes``."""

    name: Annotated[str, Field(max_length=64, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")]
    project: str
    disk_interface: Literal["Block", "File"]
    region: str
    size_gb: Annotated[int, Field(gt=0)]


class SshKey(_ApiModel):
    """``NewSshKeyModel``: a public key registered with a project."""

    fid: str
    name: str
    project: str
    public_key: str
    created_at: Timestamp
    required: bool


class CreatedSshKey(SshKey):
    """``CreatedSshKeyModel``: carries the private key when the server generated the pair."""

    private_key: str | None = Field(default=None, repr=False)


class CreateSshKeyRequest(_ApiModel):
    """``CreateSshKeyRequest``: body of ``POST /v2/ssh-keys``."""

    project: str
    name: Annotated[str, Field(min_length=1)]
    public_key: str | None = None
    required: bool = False


ItemT = TypeVar("ItemT")


class Page(_ApiModel, Generic[ItemT]):
    """``GetBidsResponse`` / ``GetInstancesResponse``: one page of a cursor-paged list."""

    data: list[ItemT]
    next_cursor: str | None = None
