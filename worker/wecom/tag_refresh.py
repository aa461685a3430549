"""A staff member's tag edits in the WeCom client, brought to the customer's profile.

WeCom's `edit_external_contact` callback says that a staff member edited a customer, not
what changed. This activity reads the customer's corp tags back (`externalcontact/get`,
every staff member's), keeps those of the synced taxonomy (`sopflow wecom sync-tags`), and
compares them with the profile's: a synced tag WeCom has and the profile lacks becomes a
`tag.added` event, one the profile has and no staff member has in WeCom a `tag.removed`,
keyed by the callback, so journeys react as to any tag. Tags outside the synced taxonomy
(a staff member's own, other groups) are left alone. Tags that events teach are never
sent back to WeCom, so nothing loops.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.client import Client

from sopflow.core.state import CustomerEvent
from sopflow.store.plans import PlanStore
from sopflow.store.wecom_tags import CorpTags
from sopflow.wecom.errors import WeComError
from worker.wecom.client import WeComClient
from workflows.client import CustomerNotFound, describe_customer, signal_customer
from workflows.contracts import EventSignal
from workflows.tag_refresh_contracts import REFRESH_TAGS_ACTIVITY, TagRefresh

log = logging.getLogger("sopflow.worker.tag_refresh")


class TagRefreshActivities:
    def __init__(
        self, client: WeComClient, tags: CorpTags, temporal: Client, plans: PlanStore
    ) -> None:
        self.client = client
        self.tags = tags
        self.temporal = temporal
        self.plans = plans

    @activity.defn(name=REFRESH_TAGS_ACTIVITY)
    async def refresh_tags(self, request: TagRefresh) -> str:
        customer = request.customer_id
        try:
            staff = await self.client.follow_users(customer)
        except WeComError as error:
            if error.retryable:
                raise
            log.warning("tags of %s not refreshed: %s", customer, error)
            return f"not refreshed: {error}"
        synced = {m.tag_id: m.tag for m in await asyncio.to_thread(self.tags.all)}
        in_wecom = {synced[t.tag_id] for u in staff for t in u.tags if t.tag_id in synced}
        view = await describe_customer(self.temporal, customer)
        if view is None:
            return "no such customer"
        have = set(view.profile.tags) & set(synced.values())
        changes = [("tag.added", t) for t in sorted(in_wecom - have)]
        changes += [("tag.removed", t) for t in sorted(have - in_wecom)]
        if not changes:
            return "no change"
        events = [
            CustomerEvent(
                customer_id=customer,
                type=kind,
                occurred_at=request.occurred_at,
                data={"tag": tag, "staff_user_id": request.staff_user_id},
                idempotency_key=f"{request.callback_key}/{kind}/{tag}",
            )
            for kind, tag in changes
        ]
        deployment = await asyncio.to_thread(self.plans.deployment)
        try:
            await signal_customer(self.temporal, EventSignal(events=events, deployment=deployment))
        except CustomerNotFound:
            return "no such customer"
        return ", ".join(f"{kind} {tag}" for kind, tag in changes)
