"""The fake Mithril's state: projects, keys, volumes, bids and instances, behind one lock."""

from __future__ import annotations

import itertools
import secrets
import string
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flow_backend.models import utc_now
from flow_backend.testing.fake_catalog import DEFAULT_REGIONS, FakeInstanceType

__all__ = ["FakeBid", "FakeInstance", "FakeState", "FakeVolume", "new_fid"]

_ALPHABET = string.ascii_lowercase + string.digits
USER_FID = "user_fake0000001"


def new_fid(prefix: str) -> str:
    """A fresh id shaped like the API's (``bid_k3j9x0c2m1p4``)."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def iso(moment: datetime | None) -> str | None:
    """``2024-01-01T00:00:00Z`` (or None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeVolume:
    fid: str
    name: str
    region: str
    project: str
    capacity_gb: int
    interface: str
    created_at: datetime = field(default_factory=utc_now)
    deleted_at: datetime | None = None
    bids: list[str] = field(default_factory=list)

    def as_api(self) -> dict[str, Any]:
        return {
            "fid": self.fid,
            "name": self.name,
            "region": self.region,
            "created_at": iso(self.created_at),
            "deleted_at": iso(self.deleted_at),
            "capacity_gb": self.capacity_gb,
            "project": self.project,
            "interface": self.interface,
            "bids": list(self.bids),
            "reservations": [],
            "attachments": {},
        }


@dataclass
class FakeInstance:
    """One machine; ``process`` runs its startup script locally."""

    fid: str
    name: str
    project: str
    bid: str
    instance_type: str
    region: str
    folder: str
    status: str = "STATUS_NEW"
    ssh_destination: str | None = None
    private_ip: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    allocated_monotonic: float = field(default_factory=time.monotonic)
    running_monotonic: float | None = None
    script_exited_monotonic: float | None = None
    terminated_monotonic: float | None = None
    exit_code: int | None = None  # internal only: the real API reports none
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    status_override: str | None = None  # a value the client may not know (see FakeMithril)
    loop_devices: list[str] = field(default_factory=list)  # its Block volumes, attached

    @property
    def billing(self) -> bool:
        """An allocated instance bills until it is terminated or preempted."""
        return self.terminated_monotonic is None

    def as_api(self) -> dict[str, Any]:
        return {
            "fid": self.fid,
            "name": self.name,
            "project": self.project,
            "created_at": iso(self.created_at),
            "created_by": USER_FID,
            "instance_type": self.instance_type,
            "region": self.region,
            "bid": self.bid,
            "reservation": None,
            "ssh_destination": self.ssh_destination,
            "private_ip": self.private_ip,
            "status": self.status_override or self.status,
        }


@dataclass
class FakeBid:
    fid: str
    seq: int
    name: str
    project: str
    region: str
    instance_type: str
    limit_price: float
    instance_quantity: int
    launch_specification: dict[str, Any]
    status: str = "Open"
    created_at: datetime = field(default_factory=utc_now)
    created_monotonic: float = field(default_factory=time.monotonic)  # reset when preempted
    placed_monotonic: float = field(default_factory=time.monotonic)
    deactivated_at: datetime | None = None
    instances: list[str] = field(default_factory=list)
    preempt_at: float | None = None
    status_override: str | None = None  # a value the client may not know (see FakeMithril)

    def shown(self, delay: float) -> bool:
        """Whether the API's reads show the bid, ``delay`` s after it was placed (they lag)."""
        return time.monotonic() - self.placed_monotonic >= delay

    @property
    def live(self) -> bool:
        """Open, Allocated or Preempting: the bid still holds or wants capacity."""
        return self.status in ("Open", "Allocated", "Preempting")

    def as_api(self) -> dict[str, Any]:
        return {
            "fid": self.fid,
            "name": self.name,
            "project": self.project,
            "created_by": USER_FID,
            "created_at": iso(self.created_at),
            "deactivated_at": iso(self.deactivated_at),
            "limit_price": f"${self.limit_price:.2f}",
            "instance_quantity": self.instance_quantity,
            "instance_type": self.instance_type,
            "region": self.region,
            "instances": list(self.instances),
            "launch_specification": dict(self.launch_specification),
            "status": self.status_override or self.status,
        }


@dataclass
class FakeState:
    """Everything the fake knows. Callers hold ``lock`` while reading or changing it."""

    instance_types: list[FakeInstanceType]
    regions: tuple[str, ...] = DEFAULT_REGIONS
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    ssh_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, FakeVolume] = field(default_factory=dict)
    bids: dict[str, FakeBid] = field(default_factory=dict)
    instances: dict[str, FakeInstance] = field(default_factory=dict)
    capacity: dict[tuple[str, str], int] = field(default_factory=dict)
    spot_prices: dict[tuple[str, str], float] = field(default_factory=dict)
    idempotent_bids: dict[str, str] = field(default_factory=dict)  # Idempotency-Key → bid
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def next_seq(self) -> int:
        return next(self._seq)

    def type_by_fid(self, fid: str) -> FakeInstanceType | None:
        return next((it for it in self.instance_types if it.fid == fid), None)

    def in_use(self, instance_type: str, region: str) -> int:
        """Instances of a type held by Allocated or Preempting bids in a region."""
        return sum(
            bid.instance_quantity
            for bid in self.bids.values()
            if bid.status in ("Allocated", "Preempting")
            and bid.instance_type == instance_type
            and bid.region == region
        )

    def free_capacity(self, instance_type: str, region: str) -> int:
        total = self.capacity.get((instance_type, region), 0)
        return max(0, total - self.in_use(instance_type, region))

    def instances_of(self, bid: FakeBid) -> list[FakeInstance]:
        return [self.instances[fid] for fid in bid.instances if fid in self.instances]
