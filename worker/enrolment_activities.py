"""The enrolment batch's activities: read a page of an audience, signal a chunk of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client

from sopflow.core.state import CustomerEvent
from sopflow.settings import Settings
from sopflow.store.event_keys import Pair, claim, mark_sent, payload_hash
from sopflow.store.plans import PlanStore
from sopflow.store.segments import in_playbook, load_segment, segment_page
from workflows.client import TemporalUnavailable, send_events
from workflows.enrolment_contracts import (
    AUDIENCE_PAGE_ACTIVITY,
    ENROL_CUSTOMERS_ACTIVITY,
    ENROLMENT_REQUESTED,
    AudiencePage,
    AudiencePageInput,
    EnrolCustomersInput,
    EnrolCustomersResult,
    enrolment_key,
)

# Signals of one chunk in flight at once (as the API sends a request's events).
CONCURRENT_SIGNALS = 50
# Attempts at a chunk whose signals Temporal refused (retried for those alone) before
# the chunk counts them as failed and the batch goes on.
SIGNAL_ATTEMPTS = 5


class EnrolmentActivities:
    def __init__(self, plans: PlanStore, temporal: Client, settings: Settings) -> None:
        self.plans = plans
        self.database = plans.database
        self.temporal = temporal
        self.settings = settings

    @activity.defn(name=AUDIENCE_PAGE_ACTIVITY)
    async def audience_page(self, request: AudiencePageInput) -> AudiencePage:
        return await asyncio.to_thread(self._page, request)

    def _page(self, request: AudiencePageInput) -> AudiencePage:
        segment = load_segment(self.database, request.audience)
        if segment is None:
            return AudiencePage(error=f"no audience '{request.audience}'")
        page = segment_page(self.database, segment, request.after, request.limit)
        already = in_playbook(self.database, page.customer_ids, request.playbook)
        return AudiencePage(
            customer_ids=[c for c in page.customer_ids if c not in already],
            scanned=page.scanned,
            next_after=page.next_after,
            already_enrolled=len(already),
            unevaluated=page.errors,
        )

    @activity.defn(name=ENROL_CUSTOMERS_ACTIVITY)
    async def enrol_customers(self, request: EnrolCustomersInput) -> EnrolCustomersResult:
        """Send each customer one `enrolment.requested` event, keyed per batch and
        customer: a key already sent (a retry, a resumed or repeated batch) is skipped."""
        data = {"playbook": request.playbook, "batch": request.batch_id}
        digest = payload_hash(ENROLMENT_REQUESTED, None, data)
        pairs: list[Pair] = [(c, enrolment_key(request.batch_id, c)) for c in request.customer_ids]
        known = await asyncio.to_thread(claim, self.database, dict.fromkeys(pairs, digest))
        fresh = [pair for pair in pairs if not (known.get(pair) and known[pair].sent)]
        deployment = await self.plans.current_deployment()
        now = datetime.now(UTC)
        gate = asyncio.Semaphore(CONCURRENT_SIGNALS)
        sent: list[Pair] = []

        async def send(pair: Pair) -> None:
            customer, key = pair
            event = CustomerEvent(
                customer_id=customer,
                type=ENROLMENT_REQUESTED,
                occurred_at=now,
                data=data,
                idempotency_key=key,
            )
            async with gate:
                try:
                    await send_events(self.temporal, self.settings, [event], deployment)
                except TemporalUnavailable as e:
                    activity.logger.warning("enrolment of %s not sent: %s", customer, e)
                    return
            sent.append(pair)
            activity.heartbeat(len(sent))

        await asyncio.gather(*(send(pair) for pair in fresh))
        await asyncio.to_thread(mark_sent, self.database, sent)
        if len(sent) < len(fresh) and activity.info().attempt < SIGNAL_ATTEMPTS:
            # Retried: the keys sent now are skipped then, the others sent again.
            raise RuntimeError(f"{len(fresh) - len(sent)} enrolments not accepted by Temporal")
        return EnrolCustomersResult(
            done=len(sent), skipped=len(pairs) - len(fresh), failed=len(fresh) - len(sent)
        )
