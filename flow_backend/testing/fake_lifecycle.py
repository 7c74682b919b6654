"""How bids and instances move on the fake: allocation, boot, the startup script, preemption, end.

Bid: ``Open`` → (after ``provisioning_delay``, with capacity and a high enough limit price)
``Allocated`` → ``Terminated`` on cancel. A preempted bid goes ``Preempting`` → back to ``Open``
(as on the real cloud: preemption never terminates a spot bid) and is allocated again on a **new**
instance: new id, new address; the old one stays listed for the bid as ``STATUS_PREEMPTED``.
Instance: ``STATUS_NEW`` → ``STATUS_CONFIRMED`` → ``STATUS_INITIALIZING`` → ``STATUS_STARTING``
(a quarter of ``boot_delay`` each, the spec's order; its address already reported) →
``STATUS_RUNNING`` (the startup script starts; its own sshd, with a host key of its own, answers
``ssh_ready_delay`` later: see :mod:`flow_backend.testing.fake_sshd`) → on cancel
``STATUS_STOPPING`` (powered off and no longer billing at once, as the SDK's "on its way out")
→ ``STATUS_TERMINATED`` ``stop_delay`` later / ``STATUS_PREEMPTING`` → ``STATUS_PREEMPTED``. An
instance stays ``STATUS_RUNNING`` (and billing) after its script exits, until its bid is
cancelled. Other statuses (``STATUS_RELOCATING``, ``STATUS_ERROR`` under an Allocated bid) are
set by hand: :meth:`~flow_backend.testing.FakeMithril.set_instance_status`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from flow_backend.testing.fake_ssh_gate import Forward, Gate, GatePool, Server
from flow_backend.testing.fake_sshd import InstanceSshd, sshd_binary
from flow_backend.testing.fake_state import FakeBid, FakeInstance, FakeState, new_fid
from flow_backend.testing.fake_volumes import (
    attach,
    backing_path,
    detach,
    namespace_command,
    unsupported_reason,
)

__all__ = ["FakeSettings", "Lifecycle"]

_SECRET_ENV = ("MITHRIL_API_KEY", "FLOW_MITHRIL_API_KEY")
#: An instance's statuses while it boots, a quarter of ``boot_delay`` each.
BOOT_STATUSES = ("STATUS_NEW", "STATUS_CONFIRMED", "STATUS_INITIALIZING", "STATUS_STARTING")


@dataclass
class FakeSettings:
    """Knobs of the fake's behaviour (all changeable while it runs).

    Attributes:
        ssh_ready_delay: Seconds after boot before an instance's sshd answers (its address is
            reported from allocation on).
        own_addresses: Every instance gets an address (loopback port) of its own; False (kindly):
            every instance reports ``ssh_destination`` itself.
        instance_host_keys: Each instance's address is served by its own sshd with its own host
            key, authorizing the bid's SSH keys, logging in as ``ssh_destination``'s user
            (:mod:`~flow_backend.testing.fake_sshd`); False (kindly): forwarded to the one sshd at
            ``ssh_destination`` (every instance has its host key).
        minimum_price_fraction: A bid below this fraction of the spot price is refused (400).
        stop_delay: Seconds a cancelled bid's instances stay ``STATUS_STOPPING``.
        bid_visibility_delay: Seconds after its creation during which a new bid answers 404 to
            GET and DELETE and is absent from the bid list, as the real API's reads lag a new bid
            (the SDK retries a new bid's 404, ``get_task_status``). 0: visible at once (kindly).
        clock_offset: Seconds the fake's clock is ahead of this machine's (negative: behind), as
            a real server's may be: its ``Date`` header and the times its lifecycle stamps (an
            instance's ``created_at``, a bid's ``deactivated_at``).
    """

    provisioning_delay: float = 0.2
    boot_delay: float = 0.2
    preemption_grace: float = 0.5
    ssh_destination: str | None = None
    private_ip: str = "127.0.0.1"
    price_floor: float = 0.0
    quota_instances: int | None = None
    ssh_ready_delay: float = 0.5
    own_addresses: bool = True
    instance_host_keys: bool = True
    minimum_price_fraction: float = 0.5
    stop_delay: float = 0.2
    bid_visibility_delay: float = 0.3
    clock_offset: float = 0.0

    def now(self) -> datetime:
        """Now on the fake's clock (see ``clock_offset``)."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)


def kill_process_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL the script's whole process group (an instance powering off) and reap the leader."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


class Lifecycle:
    """Advances the fake's state; :meth:`tick` is called often by the server's ticker thread."""

    def __init__(self, state: FakeState, settings: FakeSettings, work_root: Path) -> None:
        self.state = state
        self.settings = settings
        self.work_root = work_root
        self._gates: dict[str, Gate] = {}
        self._gate_pool = GatePool()
        self.sshds: dict[str, InstanceSshd] = {}  # instance fid → its own sshd
        self.volumes_dir = work_root.parent / "volumes"
        self._to_detach: list[str] = []  # loop devices of stopped instances

    def minimum_price(self, instance_type: str, region: str) -> float:
        """The lowest limit price (per instance-hour) a bid may offer at all (else 400)."""
        spot = self.state.spot_prices.get((instance_type, region), 0.0)
        return spot * self.settings.minimum_price_fraction

    def required_price(self, bid: FakeBid) -> float:
        """The lowest limit price (per instance-hour) that wins capacity for ``bid``."""
        spot = self.state.spot_prices.get((bid.instance_type, bid.region), 0.0)
        return max(spot, self.settings.price_floor)

    def tick(self) -> None:
        """Allocate, boot, notice exited scripts and finish preemptions that are due."""
        now = time.monotonic()
        to_kill: list[subprocess.Popen[bytes]] = []
        with self.state.lock:
            for bid in list(self.state.bids.values()):
                if bid.status == "Open":
                    self._maybe_allocate(bid, now)
                elif (
                    bid.status == "Preempting"
                    and bid.preempt_at is not None
                    and now >= bid.preempt_at
                ):
                    to_kill.extend(self._stop_instances(bid, "STATUS_PREEMPTED", now))
                    bid.status = "Open"  # allocated again later, on a new instance
                    bid.preempt_at = None
                    bid.created_monotonic = now
            for instance in self.state.instances.values():
                if instance.status in BOOT_STATUSES:
                    booting = now - instance.allocated_monotonic
                    if booting >= self.settings.boot_delay:
                        self._boot(instance, now)
                    else:
                        step = len(BOOT_STATUSES) * booting / self.settings.boot_delay
                        instance.status = BOOT_STATUSES[int(step)]
                elif instance.status == "STATUS_STOPPING":
                    stopped = instance.terminated_monotonic or now
                    if now - stopped >= self.settings.stop_delay:
                        instance.status = "STATUS_TERMINATED"
                elif instance.process is not None and instance.script_exited_monotonic is None:
                    code = instance.process.poll()
                    if code is not None:
                        instance.exit_code = code
                        instance.script_exited_monotonic = now
        for process in to_kill:
            kill_process_group(process)
        self._detach_devices()

    def cancel(self, bid: FakeBid) -> None:
        """End a bid now: processes killed, instances terminated, billing stopped."""
        with self.state.lock:
            processes = self._end(bid, "STATUS_STOPPING")
        for process in processes:
            kill_process_group(process)
        self._detach_devices()

    def preempt(self, bid: FakeBid) -> None:
        """Take a bid's capacity back: ``Preempting`` now, ``Open`` again after the grace period."""
        with self.state.lock:
            if bid.status != "Allocated":
                raise ValueError(
                    f"bid {bid.fid} is {bid.status}; only an allocated bid can be preempted"
                )
            bid.status = "Preempting"
            bid.preempt_at = time.monotonic() + self.settings.preemption_grace
            for instance in self.state.instances_of(bid):
                if instance.terminated_monotonic is None:
                    instance.status = "STATUS_PREEMPTING"

    def shutdown(self) -> None:
        """Kill every script still running (the server is stopping)."""
        with self.state.lock:
            processes = [
                instance.process
                for instance in self.state.instances.values()
                if instance.process is not None and instance.process.poll() is None
            ]
        for process in processes:
            kill_process_group(process)
        for gate in list(self._gates.values()):
            gate.close()
        self._gates.clear()
        with self.state.lock:
            for instance in self.state.instances.values():
                self._to_detach += instance.loop_devices
                instance.loop_devices = []
        self._detach_devices()

    def _detach_devices(self) -> None:
        """Detach the loop devices of instances whose processes were just killed."""
        with self.state.lock:
            devices, self._to_detach = self._to_detach, []
        for device in devices:
            detach(device)

    # -- steps ------------------------------------------------------------------------------
    def _maybe_allocate(self, bid: FakeBid, now: float) -> None:
        if now - bid.created_monotonic < self.settings.provisioning_delay:
            return
        if bid.limit_price < self.required_price(bid):
            return
        if self.state.free_capacity(bid.instance_type, bid.region) < bid.instance_quantity:
            return
        bid.status = "Allocated"
        for index in range(bid.instance_quantity):
            fid = new_fid("inst")
            folder = self.work_root / fid
            folder.mkdir(parents=True, exist_ok=True)
            self.state.instances[fid] = FakeInstance(
                fid=fid,
                name=f"{bid.name}-{index}",
                project=bid.project,
                bid=bid.fid,
                instance_type=bid.instance_type,
                region=bid.region,
                folder=str(folder),
                created_at=self.settings.now(),
                ssh_destination=self._address_for(fid, bid, folder, now),
                private_ip=self.settings.private_ip,
            )
            bid.instances.append(fid)

    def _address_for(self, instance_fid: str, bid: FakeBid, folder: Path, now: float) -> str | None:
        """The instance's ``ssh_destination``: an address of its own, or the shared sshd's."""
        target = self.settings.ssh_destination
        if target is None or not self.settings.own_addresses:
            return target
        user, _, address = target.rpartition("@")
        host, _, port = address.rpartition(":")
        server: Server
        if self.settings.instance_host_keys:
            binary = sshd_binary()
            if binary is None:
                raise RuntimeError(
                    "the fake Mithril gives each instance its own sshd, but this machine has no "
                    "sshd (install openssh-server, or FakeMithril(instance_host_keys=False))"
                )
            keys = [
                str(self.state.ssh_keys[key]["public_key"])
                for key in bid.launch_specification.get("ssh_keys") or []
                if key in self.state.ssh_keys
            ]
            server = self.sshds[instance_fid] = InstanceSshd(folder / "sshd", keys, binary)
        else:
            server = Forward((host or "127.0.0.1", int(port or 22)))
        ready_at = now + self.settings.boot_delay + self.settings.ssh_ready_delay
        gate = self._gate_pool.open(server, ready_at)
        self._gates[instance_fid] = gate
        return f"{user + '@' if user else ''}127.0.0.1:{gate.port}"

    def _stop_instances(
        self, bid: FakeBid, instance_status: str, now: float
    ) -> list[subprocess.Popen[bytes]]:
        """Power off the bid's live instances: billing stops, addresses are freed."""
        processes: list[subprocess.Popen[bytes]] = []
        for instance in self.state.instances_of(bid):
            if instance.terminated_monotonic is not None:
                continue
            instance.status = instance_status
            instance.terminated_monotonic = now
            gate = self._gates.pop(instance.fid, None)
            if gate is not None:
                self._gate_pool.close(gate)
            self._to_detach += instance.loop_devices
            instance.loop_devices = []
            if instance.process is not None:
                if instance.process.poll() is None:
                    processes.append(instance.process)
                elif instance.script_exited_monotonic is None:
                    instance.exit_code = instance.process.returncode
                    instance.script_exited_monotonic = now
        return processes

    def _boot(self, instance: FakeInstance, now: float) -> None:
        instance.status = "STATUS_RUNNING"
        instance.running_monotonic = now
        bid = self.state.bids[instance.bid]
        script = bid.launch_specification.get("startup_script")
        if not script:
            return
        folder = Path(instance.folder)
        script_path = folder / "startup_script.sh"
        script_path.write_text(script)
        env = {key: value for key, value in os.environ.items() if key not in _SECRET_ENV}
        env.update(MITHRIL_INSTANCE_FID=instance.fid, MITHRIL_INSTANCE_DIR=str(folder))
        with open(folder / "startup_script.log", "wb") as log:
            command = self._command(instance, script_path, bid, log)
            instance.process = subprocess.Popen(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        sshd = self.sshds.get(instance.fid)
        if sshd is not None and command[0] == "unshare":  # SSH sessions see the instance's mounts
            sshd.namespace_pid = instance.process.pid

    def _command(
        self, instance: FakeInstance, script: Path, bid: FakeBid, log: BinaryIO
    ) -> list[str]:
        """How the instance runs its script: with bash, in a mount namespace of its own with its
        volumes attached when it has any (see :mod:`~flow_backend.testing.fake_volumes`)."""
        volumes = [
            self.state.volumes[fid]
            for fid in bid.launch_specification.get("volumes") or []
            if fid in self.state.volumes
        ]
        if not volumes:
            return ["bash", str(script)]
        reason = unsupported_reason()
        if reason is not None:
            log.write(f"fake Mithril: volumes not attached: {reason}\n".encode())
            return ["bash", str(script)]
        devices: dict[str, str] = {}
        shares: dict[str, Path] = {}
        for volume in volumes:
            path = backing_path(self.volumes_dir, volume.fid, volume.interface, volume.capacity_gb)
            if volume.interface == "File":
                shares[volume.name] = path
                continue
            try:
                devices[volume.fid] = attach(path)
            except OSError as error:
                log.write(f"fake Mithril: volume {volume.fid} not attached: {error}\n".encode())
        instance.loop_devices = list(devices.values())
        return namespace_command(script, devices, shares)

    def _end(self, bid: FakeBid, instance_status: str) -> list[subprocess.Popen[bytes]]:
        if bid.status == "Terminated":
            return []
        bid.status = "Terminated"
        bid.deactivated_at = self.settings.now()
        bid.preempt_at = None
        processes = self._stop_instances(bid, instance_status, time.monotonic())
        for volume in self.state.volumes.values():
            if bid.fid in volume.bids:
                volume.bids.remove(bid.fid)
        return processes
