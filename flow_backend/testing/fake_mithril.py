"""``FakeMithril``: a loopback Mithril API that follows the OpenAPI spec and really runs tasks."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flow_backend.testing.fake_catalog import DEFAULT_REGIONS, default_instance_types
from flow_backend.testing.fake_http import FakeHttpServer
from flow_backend.testing.fake_lifecycle import FakeSettings, Lifecycle
from flow_backend.testing.fake_routes import Router
from flow_backend.testing.fake_sshd import sshd_binary
from flow_backend.testing.fake_state import FakeInstance, FakeState, iso, new_fid
from flow_backend.testing.fake_volumes import backing_path
from flow_backend.testing.faults import FaultPlan
from flow_backend.testing.openapi_check import SpecExchange

__all__ = ["FakeMithril"]

_ADMIN_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeOrgAdminKeyForTheFakeMithrilOnly0000000 admin@org"
)


class FakeMithril:
    """A fake Mithril Compute API on ``127.0.0.1`` (free port), usable as a context manager.

    It behaves like the real service by default (see :mod:`flow_backend.testing.fake_lifecycle`):
    the real GPU catalog only; the project has an SSH key marked ``required`` that every bid must
    carry (:attr:`required_ssh_key_fid`); bid names are lowercase; a bid below
    ``minimum_price_fraction`` of the spot price is refused; a preempted bid goes back to ``Open``
    and is allocated again on a new instance with a new address; every instance has an address
    of its own (a loopback port), reported before its sshd answers and reused by later instances,
    served by an sshd of its own with a host key of its own (:mod:`~.fake_sshd`); a Block volume
    attaches to one instance at a time.

    Bids are allocated after ``provisioning_delay`` seconds when capacity and price allow; each
    instance boots after ``boot_delay`` and runs the bid's ``startup_script`` with bash, in its own
    process group, in a folder of its own under ``work_dir``. Cancelling a bid kills that group.

    Args:
        work_dir: Where instance folders go (default: a temporary folder removed on stop).
        api_key: The key clients must send (default: a fresh random ``fkey_...``).
        ssh_destination: ``user@host:port`` of a loopback sshd: instances answer SSH as ``user``
            (each with its own sshd, see ``instance_host_keys``); None: instances have no address.
        capacity: Instances of every type available in every region.
        provisioning_delay: Seconds a bid stays ``Open`` before it may be allocated.
        boot_delay: Seconds an instance boots (``STATUS_NEW`` ... ``STATUS_STARTING``).
        preemption_grace: Seconds between ``Preempting`` and ``Terminated`` after :meth:`preempt`.
        project_name: Name of the one project the key can use.
        ssh_ready_delay: Seconds between an instance running and its sshd answering.
        own_addresses: False (kindly): every instance reports ``ssh_destination`` itself, so
            one SSH round trip reaches every instance.
        instance_host_keys: Each instance runs its own sshd (``sshd -i`` per connection) with a
            host key of its own, authorizing the bid's SSH keys. False (kindly): connections are
            forwarded to ``ssh_destination`` itself, so every instance shows its host key.
        bid_visibility_delay: Seconds a new bid stays invisible to reads (404 on GET and DELETE,
            absent from the bid list), as on the real API; 0 (kindly): visible at once.
        required_ssh_key: The project has an SSH key marked required (False: kindly, none).
        record_traffic: Keep every exchange in :attr:`exchanges` (for spec validation).
        tick_interval: How often the lifecycle advances, in seconds.
    """

    def __init__(
        self,
        work_dir: str | Path | None = None,
        *,
        api_key: str | None = None,
        ssh_destination: str | None = None,
        capacity: int = 256,
        provisioning_delay: float = 0.2,
        boot_delay: float = 0.2,
        preemption_grace: float = 0.5,
        project_name: str = "default",
        record_traffic: bool = False,
        tick_interval: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
        ssh_ready_delay: float = 0.5,
        own_addresses: bool = True,
        required_ssh_key: bool = True,
        instance_host_keys: bool = True,
        bid_visibility_delay: float = 0.3,
    ) -> None:
        if ssh_destination and own_addresses and instance_host_keys and sshd_binary() is None:
            raise ValueError(
                "FakeMithril gives each instance its own sshd, but this machine has no sshd: "
                "install openssh-server, or pass instance_host_keys=False (one shared host key)"
            )
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="fake-mithril-")).resolve()
        self.api_key = api_key or "fkey_fake" + secrets.token_hex(16)
        self.settings = FakeSettings(
            provisioning_delay=provisioning_delay,
            boot_delay=boot_delay,
            preemption_grace=preemption_grace,
            ssh_destination=ssh_destination,
            ssh_ready_delay=ssh_ready_delay,
            own_addresses=own_addresses,
            instance_host_keys=instance_host_keys,
            bid_visibility_delay=bid_visibility_delay,
        )
        self.faults = FaultPlan()
        self.state = FakeState(instance_types=default_instance_types(), regions=DEFAULT_REGIONS)
        for it in self.state.instance_types:
            for region in it.regions:
                self.state.capacity[(it.fid, region)] = capacity
                self.state.spot_prices[(it.fid, region)] = it.spot_price
        self.project_fid = new_fid("proj")
        self.project_name = project_name
        self.state.projects[self.project_fid] = {
            "fid": self.project_fid,
            "name": project_name,
            "created_at": iso(datetime.now(UTC)),
        }
        self.required_ssh_key_fid: str | None = None
        if required_ssh_key:  # the organisation's admin key, as real projects often have
            self.required_ssh_key_fid = new_fid("sshkey")
            self.state.ssh_keys[self.required_ssh_key_fid] = {
                "fid": self.required_ssh_key_fid,
                "name": "org-admin",
                "project": self.project_fid,
                "public_key": _ADMIN_PUBLIC_KEY,
                "created_at": iso(datetime.now(UTC)),
                "required": True,
            }
        self.lifecycle = Lifecycle(self.state, self.settings, self.work_dir / "instances")
        self._server = FakeHttpServer(
            (host, port), Router(self.lifecycle), self.faults, self.api_key
        )
        self._server.record_traffic = record_traffic
        self._tick_interval = tick_interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"FakeMithril(url={self.url!r}, api_key=**********)"

    # -- running ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for ``MITHRIL_API_URL`` (``http://127.0.0.1:<port>``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point ``flow`` and the launcher at this fake."""
        return {
            "MITHRIL_API_URL": self.url,
            "MITHRIL_API_KEY": self.api_key,
            "MITHRIL_PROJECT": self.project_name,
        }

    def start(self) -> FakeMithril:
        """Serve in background threads; returns self."""
        if self._threads:
            return self
        self._stop.clear()
        # serve_forever checks for shutdown every poll_interval (0.5 s by default): stopping the
        # fake then took half a second, once per test that uses it
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-mithril-http",
            daemon=True,
        )
        tick = threading.Thread(target=self._tick_forever, name="fake-mithril-tick", daemon=True)
        self._threads = [serve, tick]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, kill every startup script still running, remove a temporary work_dir."""
        self._stop.set()
        if self._threads:
            self._server.shutdown()
            for thread in self._threads:
                thread.join(timeout=10)
            self._threads = []
        self._server.server_close()
        self.lifecycle.shutdown()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> FakeMithril:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _tick_forever(self) -> None:
        while not self._stop.wait(self._tick_interval):
            self.lifecycle.tick()

    # -- request accounting ---------------------------------------------------------------------
    @property
    def request_counts(self) -> Counter[str]:
        """Requests received per ``"METHOD /route/template"`` (faulted ones included)."""
        with self._server.counts_lock:
            return Counter(self._server.counts)

    def requests_to(self, template: str, method: str | None = None) -> int:
        """How many requests hit ``template`` (e.g. ``"/v2/spot/bids"``), optionally one method."""
        return sum(
            count
            for key, count in self.request_counts.items()
            if key.split(" ", 1)[1] == template and (method is None or key.startswith(method + " "))
        )

    def reset_request_counts(self) -> None:
        with self._server.counts_lock:
            self._server.counts.clear()

    @property
    def exchanges(self) -> list[SpecExchange]:
        """Every exchange since start (only when ``record_traffic`` is on)."""
        with self._server.counts_lock:
            return list(self._server.exchanges)

    # -- market knobs ---------------------------------------------------------------------------
    def instance_type_fid(self, name_or_fid: str) -> str:
        """The ``it_...`` id of an instance type given by API name or id."""
        for it in self.state.instance_types:
            if name_or_fid in (it.fid, it.name):
                return it.fid
        raise KeyError(f"fake Mithril has no instance type {name_or_fid!r}")

    def set_capacity(self, instance_type: str, count: int, region: str | None = None) -> None:
        """Total instances of a type (name or id) in one region, or in every region."""
        fid = self.instance_type_fid(instance_type)
        with self.state.lock:
            for name in [region] if region else self.state.regions:
                self.state.capacity[(fid, name)] = count

    def withdraw_offer(self, instance_type: str, region: str) -> None:
        """Stop offering a type (name or id) in one region: it leaves the spot availability."""
        fid = self.instance_type_fid(instance_type)
        with self.state.lock:
            self.state.capacity.pop((fid, region), None)

    def set_spot_price(self, instance_type: str, dollars: float, region: str | None = None) -> None:
        """The spot price per instance-hour a bid must at least offer."""
        fid = self.instance_type_fid(instance_type)
        with self.state.lock:
            for name in [region] if region else self.state.regions:
                self.state.spot_prices[(fid, name)] = dollars

    def set_price_floor(self, dollars: float) -> None:
        """Bids whose limit price is below ``dollars`` per instance-hour stay ``Open``."""
        self.settings.price_floor = dollars

    def set_quota(self, instances: int | None) -> None:
        """Most instances all live bids may ask for together (None: unlimited)."""
        self.settings.quota_instances = instances

    def preempt(self, bid_fid: str) -> None:
        """Preempt a bid: ``Preempting`` now; after the grace its instances are killed and the bid
        is ``Open`` again, to be allocated later on a new instance."""
        with self.state.lock:
            bid = self.state.bids[bid_fid]
        self.lifecycle.preempt(bid)

    def host_key(self, instance_fid: str) -> str:
        """The public host key (``ssh-ed25519 AAAA...``) the instance's own sshd presents."""
        return self.lifecycle.sshds[instance_fid].public_key

    def replace_host_key(self, instance_fid: str) -> None:
        """Someone else answers at the instance's address: a new host key, connections cut."""
        sshd = self.lifecycle.sshds[instance_fid]
        sshd.new_host_key()
        sshd.cut()

    # -- an API newer than the client ---------------------------------------------------------
    def set_bid_status(self, bid_fid: str, status: str | None) -> None:
        """Report ``status`` for a bid whatever it is (e.g. ``"Replaced"``); None: the real one."""
        with self.state.lock:
            self.state.bids[bid_fid].status_override = status

    def set_instance_status(self, instance_fid: str, status: str | None) -> None:
        """Report ``status`` for an instance whatever it is; None: the real one."""
        with self.state.lock:
            self.state.instances[instance_fid].status_override = status

    def evolve_api(self, on: bool = True) -> None:
        """Answer like a newer API: an extra field in every object, prices without ``$``."""
        self._server.evolve = _evolved if on else None

    # -- looking inside -------------------------------------------------------------------------
    def bid(self, bid_fid: str) -> dict[str, Any]:
        """A bid as the API would return it."""
        with self.state.lock:
            return self.state.bids[bid_fid].as_api()

    def shows(self, bid_fid: str) -> bool:
        """Whether the API's reads show the bid yet (see ``bid_visibility_delay``)."""
        with self.state.lock:
            return self.state.bids[bid_fid].shown(self.settings.bid_visibility_delay)

    def bids(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [bid.as_api() for bid in self.state.bids.values()]

    def volume_backing(self, name_or_fid: str) -> Path:
        """Where a volume's bytes live here: its disk image (Block) or its folder (File); see
        :mod:`~flow_backend.testing.fake_volumes`."""
        with self.state.lock:
            volume = next(v for v in self.state.volumes.values() if name_or_fid in (v.fid, v.name))
        return backing_path(
            self.lifecycle.volumes_dir, volume.fid, volume.interface, volume.capacity_gb
        )

    def instances_of(self, bid_fid: str) -> list[FakeInstance]:
        """The instance records of a bid (with fake-only details: folder, exit code)."""
        with self.state.lock:
            return list(self.state.instances_of(self.state.bids[bid_fid]))

    def billing_instances(self) -> list[FakeInstance]:
        """Instances still allocated (and billing)."""
        with self.state.lock:
            return [instance for instance in self.state.instances.values() if instance.billing]

    def seconds_billed_after_exit(self) -> dict[str, float]:
        """Per instance whose script has exited: seconds it stayed allocated afterwards."""
        now = time.monotonic()
        with self.state.lock:
            return {
                instance.fid: (instance.terminated_monotonic or now)
                - instance.script_exited_monotonic
                for instance in self.state.instances.values()
                if instance.script_exited_monotonic is not None
            }

    def dollars_billed(self) -> dict[str, float]:
        """Per instance: dollars billed so far (allocated seconds × the spot price of its type)."""
        now = time.monotonic()
        with self.state.lock:
            return {
                instance.fid: (
                    (instance.terminated_monotonic or now) - instance.allocated_monotonic
                )
                * self.state.spot_prices.get((instance.instance_type, instance.region), 0.0)
                / 3600
                for instance in self.state.instances.values()
            }

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll ``predicate`` every 50 ms until true or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()


def _evolved(body: Any) -> Any:
    """``body`` as a newer API might write it (fields the spec lacks, ``"12.00"`` prices)."""
    if isinstance(body, list):
        return [_evolved(item) for item in body]
    if isinstance(body, dict):
        out = {key: _evolved(value) for key, value in body.items()}
        for key, value in body.items():
            if isinstance(value, str) and value.startswith("$") and "price" in key:
                out[key] = value[1:]
        if "fid" in body:
            out["spot_tier"] = {"name": "standard", "since": "2026-01-01T00:00:00Z"}
        return out
    return body
