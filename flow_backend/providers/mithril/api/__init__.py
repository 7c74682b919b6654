"""The Mithril Compute API over httpx: typed models, retries in the transport, mapped errors."""

from flow_backend.providers.mithril.api.client import DEFAULT_API_URL, MithrilClient
from flow_backend.providers.mithril.api.models import (
    MAX_STARTUP_SCRIPT_CHARS,
    Auction,
    Bid,
    CreateBidRequest,
    CreateSshKeyRequest,
    CreateVolumeRequest,
    CurrentPrices,
    Instance,
    InstanceType,
    LaunchSpecification,
    Project,
    SshKey,
    Volume,
)
from flow_backend.providers.mithril.api.transport import RetryPolicy, RetryTransport

__all__ = [
    "DEFAULT_API_URL",
    "MAX_STARTUP_SCRIPT_CHARS",
    "Auction",
    "Bid",
    "CreateBidRequest",
    "CreateSshKeyRequest",
    "CreateVolumeRequest",
    "CurrentPrices",
    "Instance",
    "InstanceType",
    "LaunchSpecification",
    "MithrilClient",
    "Project",
    "RetryPolicy",
    "RetryTransport",
    "SshKey",
    "Volume",
]
