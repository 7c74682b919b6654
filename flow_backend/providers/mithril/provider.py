"""The ``mithril`` provider: a task is a spot bid; its command runs from the bid's startup script
and is watched, fed and collected over SSH. See README's cloud section for the whole story.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flow_backend.errors import FlowError, ResourceNotFoundError, ValidationError
from flow_backend.models import TaskRecord, TaskStatus
from flow_backend.providers.base import Provider, VolumeInfo
from flow_backend.providers.mithril import volumes
from flow_backend.providers.mithril.access import TaskAccess
from flow_backend.providers.mithril.account import Account, live_catalog
from flow_backend.providers.mithril.api import Bid, Instance, MithrilClient
from flow_backend.providers.mithril.bid_create import create_bid
from flow_backend.providers.mithril.bid_request import (
    build_bid_request,
    clearer_refusal,
    launch_plan,
    volume_kinds,
)
from flow_backend.providers.mithril.keeper import start_keeper
from flow_backend.providers.mithril.lookup import find_bids, instances_for
from flow_backend.providers.mithril.nodes import LaunchPlan, NodeOps, NodeView, destination_of
from flow_backend.providers.mithril.placement import place
from flow_backend.providers.mithril.pricing import limit_price
from flow_backend.providers.mithril.records import (
    brings_logs,
    host_key_refused,
    node_views,
    past_boot_limit,
    record_of,
)
from flow_backend.providers.mithril.task_store import TaskStore
from flow_backend.providers.mithril.visibility import unseen_record, unseen_records, wait_visible
from flow_backend.providers.ssh.hosts import each
from flow_backend.remote import parse_destination

if TYPE_CHECKING:
    from flow_backend.instance_types import InstanceType as CatalogType
    from flow_backend.settings import FlowSettings
    from flow_backend.task_config import TaskConfig

__all__ = ["MithrilProvider"]

logger = logging.getLogger(__name__)


class MithrilProvider(TaskAccess, Provider):
    """Runs tasks as Mithril spot bids (``MITHRIL_API_KEY``, ``MITHRIL_PROJECT``, ``MITHRIL_API_URL``)."""

    name = "mithril"
    reaches_tasks = True

    def __init__(self, settings: FlowSettings, *, client: MithrilClient | None = None) -> None:
        super().__init__(settings)
        self.client = client or MithrilClient(settings.mithril_api_key, settings.mithril_api_url)
        self.account = Account(self.client, settings.mithril_project, settings.ssh_key_path)
        self.store = TaskStore(Path(settings.home))
        self._plans: dict[str, LaunchPlan] = {}
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._nodes: NodeOps | None = None
        self.remote_root = settings.mithril_remote_root
        self.ssh_user = settings.mithril_ssh_user

    @property
    def nodes(self) -> NodeOps:
        with self._lock:
            if self._nodes is None:
                known_hosts = Path(self.settings.home).expanduser() / "known_hosts"
                self._nodes = NodeOps(self.account.key_path, known_hosts, self.remote_root)
            return self._nodes

    # -- submit ---------------------------------------------------------------------------------
    def submit(self, config: TaskConfig) -> TaskRecord:
        """Place the task's spot bid; it starts ``pending`` and is fed over SSH once allocated.

        Raises:
            ValidationError: Bad input (see :func:`build_bid_request`), or Mithril refused the
                limit price as below its minimum.
        """
        choice = build_bid_request(
            config, self.account, self.settings.mithril_region, self.remote_root
        )
        try:
            bid = create_bid(self.client, choice.request)  # finds one a refused retry left
        except ValidationError as error:
            raise clearer_refusal(error, choice) from None
        with self._lock:
            self._plans[bid.fid] = launch_plan(config, bid, choice.type_name)
        record = record_of(bid, [], choice.type_name, None, ssh_user=self.ssh_user)
        self.store.save_placed(record)  # the API's reads may not show the bid for a moment
        return record

    def limit_price_per_hour(self, config: TaskConfig) -> float | None:
        """The limit price ``config``'s bid would offer now (see :func:`build_bid_request`).

        Raises:
            ValidationError: No instance type (Mithril has no default); its existing volumes are
                not in the region asked for (see :func:`place`).
            ResourceNotFoundError: Mithril offers no such type, or none in its volumes' region.
        """
        offer = place(config, self.account, self.settings.mithril_region).offer
        if offer is None:
            return None
        return limit_price(offer.last_instance_price, config.max_price_per_hour)

    def check_volumes(self, config: TaskConfig, tasks_at_once: int = 1) -> None:
        """Refuse, before anything starts, volumes that ``tasks_at_once`` tasks like ``config``
        could not share: a Block volume attaches to one instance at a time (an existing volume
        keeps its kind, whatever ``interface`` says).

        Raises:
            ValidationError: Naming the volume and the File volumes to use instead.
        """
        if not config.volumes:
            return
        existing = {
            v.name: v for v in self.client.list_volumes(self.account.project_fid, region=None)
        }
        volume_kinds(config, existing, tasks_at_once)

    def adopt(self, plan: LaunchPlan) -> None:
        """Feed the task of ``plan`` from this process (a keeper taking a detached task over)."""
        with self._lock:
            self._plans[plan.task_id] = plan

    def detach(self, task_id: str) -> str | None:
        """Start a keeper that feeds the task, collects it and cancels its bid at the end (see
        :mod:`flow_backend.providers.mithril.keeper`); this process stops feeding it."""
        with self._lock:
            plan = self._plans.pop(task_id, None)
        if plan is None:
            return None
        log = self.store.folder(task_id) / "keeper.log"
        try:
            pid = start_keeper(self.settings, plan, log)
        except FlowError:
            self.adopt(plan)  # still ours: the caller may wait or cancel
            raise
        return (
            f"a keeper (pid {pid}) starts the command once the instance answers and cancels the "
            f"bid when it ends; it runs on this machine (log: {log})"
        )

    def _find_bids(self, task_ids: list[str]) -> dict[str, Bid]:
        """The bids the API shows; one placed here moments ago may be missing (see
        :data:`~flow_backend.providers.mithril.visibility.VISIBILITY_GRACE`)."""
        return find_bids(self.client, self.account.project_fid, task_ids, self.store.placed_age)

    # -- status ---------------------------------------------------------------------------------
    def get(self, task_id: str) -> TaskRecord:
        return self.get_many([task_id])[task_id]

    def get_many(self, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """Records of many tasks with O(1) API requests (a bid list and an instance list)."""
        records: dict[str, TaskRecord] = {}
        todo = []
        for task_id in dict.fromkeys(task_ids):
            saved = self.store.load(task_id)
            if saved is not None and saved.status.is_terminal:
                records[task_id] = saved
            else:
                todo.append(task_id)
        if not todo:
            return records
        bids = self._find_bids(todo)
        instances = instances_for(self.client, self.account.project_fid, list(bids.values()))
        records.update(self._observe(list(bids.values()), instances))
        records.update({t: unseen_record(self.store, t) for t in todo if t not in bids})
        return records

    def _observe(
        self, bids: list[Bid], instances: dict[str, list[Instance]]
    ) -> dict[str, TaskRecord]:
        """Build the records; start, read and collect nodes over SSH (one round trip per host)."""
        views = {bid.fid: node_views(bid, instances[bid.fid], self.ssh_user) for bid in bids}
        live = [(bid, views[bid.fid] or []) for bid in bids if views[bid.fid]]
        errors: dict[str, str] = {}
        try:
            ops = self.nodes if live else None
        except ValidationError as error:  # no SSH key here: report, still show API states
            errors = {node.destination: str(error) for _, nodes in live for node in nodes}
            ops = None
        if ops is not None:
            errors.update(ops.discover([(bid.name, nodes) for bid, nodes in live]))
            errors.update(self._start_ready(live, instances))
            errors.update(ops.read([node for _, nodes in live for node in nodes]))
        records = {}
        for bid in bids:
            nodes = views[bid.fid]
            plan = self._plans.get(bid.fid)
            ran = bool(plan and plan.ran)
            record = record_of(
                bid,
                instances[bid.fid],
                self._type_name(bid),
                nodes,
                feeding=plan is not None,
                ran=ran,
                ssh_user=self.ssh_user,
            )
            if plan is not None and record.status is TaskStatus.RUNNING:
                plan.ran = True  # from now on never "provisioning", never past the boot limit
            trouble = [errors[n.destination] for n in nodes or [] if n.destination in errors]
            if record.message is None and trouble:  # booting sshd, network blip: next poll
                record.message = f"waiting for SSH: {trouble[0]}"
            if bid.status == "Allocated":
                limit, now = self.settings.mithril_boot_timeout, self.client.server_now()
                past_boot_limit(record, instances[bid.fid], limit, ran=ran, now=now)
            refusals = [ops.refused(n.instance_fid) for n in nodes or []] if ops else []
            if any(refusals):
                host_key_refused(record, next(r for r in refusals if r))
            records[bid.fid] = record
        ended = [bid for bid in bids if records[bid.fid].status.is_terminal]
        self._finish(ended, views, records, instances)
        return records

    def _finish(
        self,
        ended: list[Bid],
        views: dict[str, list[NodeView] | None],
        records: dict[str, TaskRecord],
        instances: dict[str, list[Instance]],
    ) -> None:
        """Logs home (one round trip per host), results, then every bid cancelled concurrently."""
        if not ended:
            return
        collected = [
            b for b in ended if views[b.fid] and brings_logs(records[b.fid], b, instances[b.fid])
        ]
        if collected:
            self.nodes.collect_logs(
                [((views[b.fid] or [])[0], self.store.log_path(b.fid)) for b in collected]
            )
            each(collected, lambda bid: self._collect_results(bid, (views[bid.fid] or [])[0]))
        each(ended, self._cancel_bid)
        finished = [(b, views[b.fid] or []) for b in ended if views[b.fid]]
        if finished:  # a cloud instance's disk goes with it; a loopback "instance" keeps its files
            places = [(b.name, n.destination) for b, nodes in finished for n in nodes]
            self.nodes.clean([(name, where) for name, where in places if _is_loopback(where)])
            self.nodes.forget([n.instance_fid for _, nodes in finished for n in nodes])
        for bid in ended:
            self.store.save(records[bid.fid])

    def _start_ready(
        self, live: list[tuple[Bid, list[NodeView]]], instances: dict[str, list[Instance]]
    ) -> dict[str, str]:
        """Hand every discovered, not yet started node of our own tasks its environment."""
        launches = []
        for bid, nodes in live:
            plan = self._plans.get(bid.fid)
            if plan is None or not all(n.node_dir for n in nodes):
                continue
            if any(i.status != "STATUS_RUNNING" for i in instances[bid.fid]):
                continue  # stopped by Mithril: read it, collect its log, never feed it
            if all(n.instance_fid in plan.started for n in nodes):
                continue
            launches.append((plan, nodes, instances[bid.fid][0].private_ip or "127.0.0.1"))
        if not launches:
            return {}
        with self._start_lock:  # two polling threads must not hand a node its environment twice
            todo = [
                (plan, nodes, ip)
                for plan, nodes, ip in launches
                if not all(n.instance_fid in plan.started for n in nodes)
            ]
            return self.nodes.start(todo) if todo else {}

    def _type_name(self, bid: Bid) -> str:
        plan = self._plans.get(bid.fid)
        return plan.instance_type if plan else self.account.instance_type_name(bid.instance_type)

    def _collect_results(self, bid: Bid, node: NodeView) -> None:
        """Mirror an absolute working folder home before the bid is cancelled."""
        plan = self._plans.get(bid.fid)
        if plan and plan.working_dir and os.path.isabs(plan.working_dir):
            try:
                self.nodes.collect_results(node, plan.working_dir)
            except FlowError as error:
                logger.warning("could not collect the results of %s: %s", bid.name, error)

    def _cancel_bid(self, bid: Bid) -> None:
        """Cancel the bid (nothing keeps billing) and forget this process's plan for it."""
        if bid.status != "Terminated":  # Open, Allocated, ... and statuses newer than this client
            with contextlib.suppress(ResourceNotFoundError):
                self.client.cancel_bid(bid.fid)
        with self._lock:
            self._plans.pop(bid.fid, None)

    def list_tasks(
        self, *, active_only: bool = False, name_prefix: str | None = None
    ) -> list[TaskRecord]:
        """Every bid of the project (newest first), without SSH: one bid list + one instance list.

        A task seen ended here whose bid is still live (preempted, its bid back to ``Open``) has its
        bid cancelled, whichever process looks: nothing that ended may bill on. One whose instance
        Mithril stopped has its log brought home first (over SSH). Bids this machine placed
        moments ago that the list leaves out yet come first, ``pending``.
        """
        bids = [
            bid
            for bid in self.client.iter_bids(project=self.account.project_fid)
            if name_prefix is None or bid.name.startswith(name_prefix)
        ]
        saved_records = {bid.fid: self.store.load(bid.fid) for bid in bids}
        unsaved = [b for b in bids if not _is_terminal(saved_records[b.fid])]
        instances = instances_for(self.client, self.account.project_fid, unsaved)
        records = []
        for bid in bids:
            saved = saved_records[bid.fid]
            if saved is not None and saved.status.is_terminal:
                record = saved
            else:
                record = record_of(
                    bid,
                    instances.get(bid.fid, []),
                    self._type_name(bid),
                    None,
                    ssh_user=self.ssh_user,
                )
                if brings_logs(record, bid, instances.get(bid.fid, [])):  # stopped by Mithril
                    record = self._observe([bid], instances)[bid.fid]  # log home, then cancelled
                elif record.status.is_terminal:
                    self._cancel_bid(bid)  # preempted: back to Open, it would bill again
                    self.store.save(record)
            if not active_only or not record.status.is_terminal:
                records.append(record)
        return unseen_records(self.store, {bid.fid for bid in bids}, name_prefix) + records

    def cancel(self, task_id: str) -> TaskRecord:
        """Cancel the bid: its instances stop and stop billing."""
        saved = self.store.load(task_id)
        bid = wait_visible(self._find_bids, task_id)  # DELETE of an unseen bid: 404
        self._cancel_bid(bid)
        ops = self._nodes  # only a process that fed the nodes knows their folders
        if ops is not None and any(ops.known_dir(fid) for fid in bid.instances):
            instances = instances_for(self.client, self.account.project_fid, [bid])[bid.fid]
            destinations = {destination_of(i, self.ssh_user) for i in instances} - {None}
            ops.clean([(bid.name, d) for d in destinations if d and _is_loopback(d)])
            ops.forget(bid.instances)
        if saved is not None and saved.status.is_terminal:
            return saved
        record = self.get(task_id)
        self.store.save(record)
        return record

    def price_per_hour(self, instance_type: str) -> float:
        """The lowest current spot price of one instance of the type (any region, any of the ids
        sharing its name): what it costs now. A bid offers up to ``LIMIT_PRICE_FACTOR`` times it
        (see :mod:`flow_backend.providers.mithril.pricing`)."""
        fids = {it.fid for it in self.account.instance_types_named(instance_type)}
        prices = [
            a.last_instance_price for a in self.account.availability() if a.instance_type in fids
        ]
        return min(prices, default=0.0)

    def instance_types(self) -> list[CatalogType]:
        """The live catalog, one row per display name, at its lowest current spot price, with
        the short names of the catalog type of the same shape (``a100``, ``8xh100``)."""
        return live_catalog(self.account.instance_types(), self.account.availability())

    # -- volumes ----------------------------------------------------------------------------------
    def list_volumes(self) -> list[VolumeInfo]:
        return volumes.list_volumes(
            self.client, self.account.project_fid, self.settings.mithril_region
        )

    def create_volume(self, name: str, size_gb: float) -> VolumeInfo:
        fixed = self.settings.mithril_region
        region = fixed or volumes.first_region(self.account.availability())
        return volumes.create_volume(
            self.client, self.account.project_fid, region, name, size_gb, fixed=fixed is not None
        )

    def delete_volume(self, name: str) -> None:
        volumes.delete_volume(
            self.client, self.account.project_fid, self.settings.mithril_region, name
        )

    def close(self) -> None:
        if self._nodes is not None:
            self._nodes.close()
        self.client.close()


def _is_terminal(record: TaskRecord | None) -> bool:
    return record is not None and record.status.is_terminal


def _is_loopback(destination: str) -> bool:
    return parse_destination(destination, field="ssh_destination").is_loopback
