"""Activities: the workflow's only way to touch the world."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from sopflow.core.state import Delivery
from sopflow.store.ledger import Ledger
from sopflow.store.plans import PlanStore
from worker.channels.base import ChannelAdapter, PermanentDeliveryError, Receipt
from workflows.contracts import (
    DELIVER_ACTIVITY,
    DELIVER_BATCH_ACTIVITY,
    LOAD_PLANS_ACTIVITY,
    RECORD_TIMELINE_ACTIVITY,
    DeliveryBatch,
    DeliveryBatchOutcome,
    DeliveryOutcome,
    LoadPlansInput,
    LoadPlansResult,
    RecordTimelineInput,
)


class SopflowActivities:
    """Holds the adapters and stores the activities need; one instance per worker."""

    def __init__(
        self, plan_store: PlanStore, channels: dict[str, ChannelAdapter], ledger: Ledger
    ) -> None:
        self.plan_store = plan_store
        self.channels = channels
        self.ledger = ledger

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_message(self, delivery: Delivery) -> DeliveryOutcome:
        """Deliver once: the ledger refuses what already reached its channel.

        A retry after the remote side received the effect (the worker died before the
        activity completed) finds the ledger row and delivers nothing. Between the remote's
        answer and the ledger write a crash can still cause one more attempt; it carries
        the same Idempotency-Key, which receivers use to drop it.
        """
        key = delivery.idempotency_key
        if await asyncio.to_thread(self.ledger.delivered, key):
            return _already_delivered(key)
        try:
            return await self._send(delivery)
        except PermanentDeliveryError as e:
            raise ApplicationError(str(e), type="PermanentDeliveryError", non_retryable=True) from e

    @activity.defn(name=DELIVER_BATCH_ACTIVITY)
    async def deliver_messages(self, batch: DeliveryBatch) -> DeliveryBatchOutcome:
        """Deliver a customer's local messages in order, each once (run as a local activity).

        One ledger query finds what a previous attempt already delivered; the rest go out
        in order and each is recorded as it goes. A permanent refusal is that message's
        outcome; anything else fails the attempt, and the retry skips what got through.
        """
        keys = [d.idempotency_key for d in batch.deliveries]
        done = await asyncio.to_thread(self.ledger.delivered_keys, keys)
        outcomes = []
        for delivery in batch.deliveries:
            key = delivery.idempotency_key
            if key in done:
                outcomes.append(_already_delivered(key))
                continue
            try:
                outcomes.append(await self._send(delivery))
            except PermanentDeliveryError as e:
                outcomes.append(
                    DeliveryOutcome(idempotency_key=key, delivered=False, detail=str(e))
                )
        return DeliveryBatchOutcome(outcomes=outcomes)

    async def _send(self, delivery: Delivery) -> DeliveryOutcome:
        """Hand a delivery to its channel's adapter and record it in the ledger; a refusal
        (or a channel without an adapter) raises PermanentDeliveryError."""
        adapter = self.channels.get(delivery.channel)
        if adapter is None:
            raise PermanentDeliveryError(f"no adapter for channel '{delivery.channel}'")
        answer = await adapter.deliver(delivery)
        receipt = answer if isinstance(answer, Receipt) else Receipt("delivered", answer)
        status = None if receipt.status == "delivered" else receipt.status
        await asyncio.to_thread(self.ledger.record_delivery, delivery, receipt.detail, status)
        return DeliveryOutcome(
            idempotency_key=delivery.idempotency_key,
            delivered=True,
            detail=receipt.detail,
            status=status,
            sender=receipt.sender,
        )

    @activity.defn(name=RECORD_TIMELINE_ACTIVITY)
    async def record_timeline(self, request: RecordTimelineInput) -> int:
        """Append to the journey ledger (run as a local activity: a fast, keyed write)."""
        return await asyncio.to_thread(
            self.ledger.record_timeline, request.customer_id, request.entries
        )

    @activity.defn(name=LOAD_PLANS_ACTIVITY)
    async def load_plans(self, request: LoadPlansInput) -> LoadPlansResult:
        """The plans of these versions, from the read model (cached: plans never change)."""
        return await asyncio.to_thread(self._load_plans, request)

    def _load_plans(self, request: LoadPlansInput) -> LoadPlansResult:
        result = LoadPlansResult()
        for version in request.versions:
            plan = self.plan_store.load(version)
            if plan is None:
                result.missing.append(version)
            else:
                result.plans.append(plan)
        for version in request.profile_versions:
            rules = self.plan_store.load_profile(version)
            if rules is None:
                result.missing.append(version)
            else:
                result.profiles.append(rules)
        return result


def _already_delivered(key: str) -> DeliveryOutcome:
    return DeliveryOutcome(idempotency_key=key, delivered=True, detail="already delivered (ledger)")
