"""Placing a spot bid, and finding it when a retried POST was refused.

The client sends every bid POST with an ``Idempotency-Key``, and the transport retries it after a
5xx or a timeout. The retry may then get 409 (the key is in use) or 429, which says nothing about
what the earlier attempt made (the SDK's ``create_may_have_succeeded``): the bid may exist and
bill with nobody feeding it, and a launcher's retry would add a second one. So after a retried
POST is refused that way, the project's bids of this name placed since the submit began are
looked up, newest first, and the newest is the task's bid; only when none shows within
:data:`ADOPT_WAIT` seconds (a new bid is missing from the list for a moment, see
:mod:`~flow_backend.providers.mithril.visibility`) is the refusal raised.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flow_backend.errors import ConflictError, ProviderError
from flow_backend.providers.mithril.api import Bid, MithrilClient
from flow_backend.providers.mithril.api.models import CreateBidRequest
from flow_backend.providers.mithril.visibility import poll_until

__all__ = ["ADOPT_WAIT", "create_bid", "placed_since"]

logger = logging.getLogger(__name__)

#: Seconds to look for the bid a refused retry may have left before raising the refusal.
ADOPT_WAIT = 5.0
#: Slack for the API's whole-second ``Date`` header behind :meth:`MithrilClient.server_now`.
_CLOCK_SLACK = timedelta(seconds=2)


def create_bid(client: MithrilClient, request: CreateBidRequest) -> Bid:
    """Place ``request``'s bid; after a retried POST got 409 or 429, the bid it may have placed.

    Raises:
        ConflictError, ProviderError: The refusal, when no bid of the name was placed since.
        FlowError: Any other failure of :meth:`MithrilClient.create_bid`, unchanged.
    """
    since = client.server_now() - _CLOCK_SLACK
    try:
        return client.create_bid(request)
    except (ConflictError, ProviderError) as error:
        if error.attempts <= 1:
            raise
        bid = placed_since(client, request.project, request.name, since)
        if bid is None:
            raise
        logger.warning(
            "Mithril refused a retry of placing bid %r (%s) after %d attempts, but an earlier "
            "attempt placed bid %s: it is the task's bid",
            request.name,
            error.message,
            error.attempts,
            bid.fid,
        )
        return bid


def placed_since(
    client: MithrilClient, project: str, name: str, since: datetime, wait: float | None = None
) -> Bid | None:
    """The newest bid named ``name`` created at or after ``since`` (API clock), looking for
    ``wait`` seconds (default :data:`ADOPT_WAIT`); None if none shows."""

    def newest() -> Bid | None:
        for bid in client.iter_bids(project=project, name=name, newest_first=True):
            return bid if bid.created_at >= since else None  # the rest are older still
        return None

    return poll_until(newest, ADOPT_WAIT if wait is None else wait)
