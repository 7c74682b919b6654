"""What a provider looks up once and reuses: project id, instance-type ids, the SSH key id."""

from __future__ import annotations

import contextlib
import getpass
import socket
import threading
import time
from pathlib import Path

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.instance_types import parse_instance_type
from flow_backend.providers.mithril.api import (
    Auction,
    CreateSshKeyRequest,
    InstanceType,
    MithrilClient,
)

__all__ = ["Account", "choose_region"]

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
        self._types: dict[str, InstanceType] | None = None
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

    def instance_type(self, name: str) -> InstanceType:
        """The API's instance type with the catalog's full spec (``a100-80gb.sxm.1x``) or short name."""
        with self._lock:
            if self._types is None:
                self._types = {it.name.lower(): it for it in self.client.list_instance_types()}
            types = self._types
        found = types.get(name.lower())
        if found is None:  # a short catalog name such as "a100" → "a100-80gb.sxm.1x"
            with contextlib.suppress(ResourceNotFoundError):
                found = types.get(parse_instance_type(name).name.lower())
        if found is None:
            raise ResourceNotFoundError(
                f"Mithril offers no instance type {name!r}",
                field="instance_type",
                value=name,
                hint=f"Mithril offers: {', '.join(sorted(types))}",
            )
        return found

    def instance_type_name(self, fid: str) -> str:
        """The name of an ``it_...`` id (the id itself when unknown)."""
        with self._lock:
            if self._types is None:
                self._types = {it.name.lower(): it for it in self.client.list_instance_types()}
            return next((it.name for it in self._types.values() if it.fid == fid), fid)

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


def choose_region(auctions: list[Auction], instance_type_fid: str, count: int) -> str | None:
    """The region for a bid: enough spot capacity first, then the lowest price; None if not offered."""
    offers = [a for a in auctions if a.instance_type == instance_type_fid]
    if not offers:
        return None
    best = min(offers, key=lambda a: (a.capacity < count, a.last_instance_price, -a.capacity))
    return best.region
