"""What a provider looks up once and reuses: project id, instance-type ids, the SSH key id."""

from __future__ import annotations

import contextlib
import getpass
import socket
import threading
import time
from pathlib import Path

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.instance_types import InstanceType as CatalogType
from flow_backend.instance_types import catalog, parse_instance_type
from flow_backend.providers.mithril.api import (
    Auction,
    CreateSshKeyRequest,
    InstanceType,
    MithrilClient,
)

__all__ = ["Account", "choose_offer", "live_catalog"]

_DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_rsa", "~/.ssh/id_ecdsa")


class Account:
    """Cached facts about the Mithril account, resolved on first use (thread-safe)."""

    def __init__(
        self, client: MithrilClient, project: str | None, ssh_key_path: Path | None
    ) -> None:
        self.client = client
        self._project_setting = project
        self._ssh_key_setting = ssh_key_path
        self._lock = threading.Lock()
        self._project_fid: str | None = None
        self._types: list[InstanceType] | None = None
        self._required_keys: list[str] | None = None
        self._ssh_key_fid: str | None = None
        self._availability: tuple[float, list[Auction]] | None = None

    @property
    def project_fid(self) -> str:
        """The ``proj_...`` id of ``mithril_project`` (a name or id; the only project if unset)."""
        with self._lock:
            if self._project_fid is None:
                self._project_fid = self._resolve_project()
            return self._project_fid

    def _resolve_project(self) -> str:
        projects = self.client.list_projects()
        wanted = self._project_setting
        if wanted:
            for project in projects:
                if wanted in (project.fid, project.name):
                    return project.fid
            names = ", ".join(sorted(p.name for p in projects)) or "none"
            raise ResourceNotFoundError(
                f"Mithril project {wanted!r} not found",
                field="mithril_project",
                value=wanted,
                hint=f"Set MITHRIL_PROJECT to one of: {names}",
            )
        if len(projects) == 1:
            return projects[0].fid
        names = ", ".join(sorted(p.name for p in projects)) or "none"
        raise ValidationError(
            "mithril_project is not set and the API key sees "
            + ("no project" if not projects else f"{len(projects)} projects"),
            field="mithril_project",
            hint=f"Set MITHRIL_PROJECT to one of: {names}",
        )

    def instance_types(self) -> list[InstanceType]:
        """The live catalog (``/v2/instance-types``), read once. Two may share a name."""
        with self._lock:
            if self._types is None:
                self._types = self.client.list_instance_types()
            return list(self._types)

    def offered_names(self) -> list[str]:
        """Every display name the live catalog offers, sorted."""
        return sorted({it.name for it in self.instance_types()})

    def instance_types_named(self, name: str) -> list[InstanceType]:
        """The API's types for a display name (``h100-80gb.sxm.8x``) or a catalog name (``8xh100``).

        A catalog name matches the API types of the same shape (GPU model, count, memory).
        Several types may share one display name; all are returned, for the market to choose.

        Raises:
            ResourceNotFoundError: Mithril offers no such type; the message lists what it offers.
        """
        types = self.instance_types()
        found = [it for it in types if it.name.lower() == name.strip().lower()]
        if not found:
            with contextlib.suppress(ResourceNotFoundError):
                spec = parse_instance_type(name)
                family = (spec.gpu_model or "none").split()[0].upper()
                found = [
                    it
                    for it in types
                    if it.gpu_type.upper() == family
                    and it.num_gpus == spec.gpu_count
                    and it.gpu_memory_gb == spec.gpu_memory_gb
                ]
        if not found:
            raise ResourceNotFoundError(
                f"Mithril offers no instance type {name!r}",
                field="instance_type",
                value=name,
                hint=f"Mithril offers: {', '.join(self.offered_names())} (`flow instance-types`)",
            )
        return found

    def instance_type(self, name: str) -> InstanceType:
        """The first API type for ``name`` (see :meth:`instance_types_named`)."""
        return self.instance_types_named(name)[0]

    def instance_type_name(self, fid: str) -> str:
        """The name of an ``it_...`` id (the id itself when unknown)."""
        return next((it.name for it in self.instance_types() if it.fid == fid), fid)

    def required_ssh_key_fids(self) -> list[str]:
        """Keys the project marks ``required``: every bid must carry them (else 400)."""
        with self._lock:
            cached = self._required_keys
        if cached is None:
            keys = self.client.list_ssh_keys(self.project_fid)
            cached = sorted(key.fid for key in keys if key.required)
            with self._lock:
                self._required_keys = cached
        return list(cached)

    def availability(self, max_age: float = 5.0) -> list[Auction]:
        """Spot availability, reused for ``max_age`` seconds (concurrent submissions share it)."""
        with self._lock:
            cached = self._availability
            if cached is not None and time.monotonic() - cached[0] <= max_age:
                return cached[1]
        auctions = self.client.list_availability()
        with self._lock:
            self._availability = (time.monotonic(), auctions)
        return auctions

    @property
    def key_path(self) -> Path:
        """The private key used for SSH; its ``.pub`` is registered with the project."""
        if self._ssh_key_setting is not None:
            return self._ssh_key_setting.expanduser()
        for candidate in _DEFAULT_KEYS:
            path = Path(candidate).expanduser()
            if path.is_file() and path.with_name(path.name + ".pub").is_file():
                return path
        raise ValidationError(
            "ssh_key_path is not set and no ~/.ssh/id_ed25519 or ~/.ssh/id_rsa exists",
            field="ssh_key_path",
            hint="Create a key (ssh-keygen -t ed25519) or set FLOW_SSH_KEY_PATH to a private key",
        )

    @property
    def ssh_key_fid(self) -> str:
        """The ``sshkey_...`` id of our public key, registering it on first use."""
        with self._lock:
            if self._ssh_key_fid is None:
                self._ssh_key_fid = self._register_key()
            return self._ssh_key_fid

    def _register_key(self) -> str:
        private = self.key_path
        public_file = private.with_name(private.name + ".pub")
        if not public_file.is_file():
            raise ValidationError(
                f"the public key {str(public_file)!r} of ssh_key_path is missing",
                field="ssh_key_path",
                value=str(private),
                hint=f"Recreate it with: ssh-keygen -y -f {private} > {public_file}",
            )
        public_key = public_file.read_text().strip()
        key_body = " ".join(public_key.split()[:2])
        project = self._project_fid or self._resolve_project()
        for key in self.client.list_ssh_keys(project):
            if " ".join(key.public_key.split()[:2]) == key_body:
                return key.fid
        name = f"flow-{getpass.getuser()}-{socket.gethostname()}"[:60]
        created = self.client.create_ssh_key(
            CreateSshKeyRequest(project=project, name=name, public_key=public_key)
        )
        return created.fid


def choose_offer(
    auctions: list[Auction], instance_type_fids: set[str], count: int, region: str | None = None
) -> Auction | None:
    """The market for a bid among the types given (one display name may have several ids):
    enough spot capacity first, then the lowest price; None if not offered (in ``region``)."""
    offers = [
        a
        for a in auctions
        if a.instance_type in instance_type_fids and (region is None or a.region == region)
    ]
    if not offers:
        return None
    return min(offers, key=lambda a: (a.capacity < count, a.last_instance_price, -a.capacity))


def live_catalog(types: list[InstanceType], auctions: list[Auction]) -> list[CatalogType]:
    """The API's types as catalog rows: one per display name, at its lowest spot price now."""
    prices: dict[str, float] = {}
    for auction in auctions:
        prices[auction.instance_type] = min(
            prices.get(auction.instance_type, auction.last_instance_price),
            auction.last_instance_price,
        )
    rows: dict[str, CatalogType] = {}
    for it in types:
        model = f"{it.gpu_type} {it.gpu_memory_gb}GB"
        same_shape = [
            c.short_names for c in catalog() if c.gpu_model == model and c.gpu_count == it.num_gpus
        ]
        row = CatalogType(
            name=it.name,
            gpu_model=model,
            gpu_count=it.num_gpus,
            gpu_memory_gb=it.gpu_memory_gb,
            interconnect="sxm"
            if it.gpu_socket.upper().startswith("SXM")
            else it.gpu_socket.lower(),
            vcpus=it.num_cpus,
            ram_gb=it.ram_gb,
            price_per_hour=prices.get(it.fid, it.hourly_price),
            short_names=same_shape[0] if same_shape else (),
        )
        known = rows.get(it.name)
        if known is None or row.price_per_hour < known.price_per_hour:
            rows[it.name] = row
    return sorted(rows.values(), key=lambda row: (row.price_per_hour, row.name))
