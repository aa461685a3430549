"""Activities: the workflow's only way to touch the world."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from sopflow.plan_store import PlanStore
from worker.channels.base import ChannelAdapter, PermanentDeliveryError
from workflows.contracts import (
    DELIVER_ACTIVITY,
    LOAD_PLANS_ACTIVITY,
    DeliveryOutcome,
    LoadPlansInput,
    LoadPlansResult,
)
from workflows.state import Delivery


class SopflowActivities:
    """Holds the adapters and stores the activities need; one instance per worker."""

    def __init__(self, plan_store: PlanStore, channels: dict[str, ChannelAdapter]) -> None:
        self.plan_store = plan_store
        self.channels = channels

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_message(self, delivery: Delivery) -> DeliveryOutcome:
        adapter = self.channels.get(delivery.channel)
        if adapter is None:
            raise ApplicationError(
                f"no adapter for channel '{delivery.channel}'",
                type="PermanentDeliveryError",
                non_retryable=True,
            )
        try:
            detail = await adapter.deliver(delivery)
        except PermanentDeliveryError as e:
            raise ApplicationError(str(e), type="PermanentDeliveryError", non_retryable=True) from e
        return DeliveryOutcome(
            idempotency_key=delivery.idempotency_key, delivered=True, detail=detail
        )

    @activity.defn(name=LOAD_PLANS_ACTIVITY)
    async def load_plans(self, request: LoadPlansInput) -> LoadPlansResult:
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
