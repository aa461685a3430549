"""POST /v1/events and /v1/events:batch: hand customer events to their workflows."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, IngestDep, PlanStoreDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.models import ErrorResponse, EventAccepted, EventIn
from sopflow.core.deployment import Deployment
from sopflow.core.state import CustomerEvent
from sopflow.language.diagnostics import nearest
from sopflow.language.events import STANDARD_EVENT_TYPES, declared_event_types
from sopflow.settings import Settings
from sopflow.store.acquisitions import record_events
from sopflow.store.plans import PlanStore
from workflows.client import signal_with_start
from workflows.contracts import EventSignal, customer_workflow_id

router = APIRouter(prefix="/v1", tags=["events"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 413, 422, 503)
}
# Signals to different customers go out together, a bounded number at a time.
CONCURRENT_SIGNALS = 50


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, description="Up to 1,000 events, in order.")


class BatchAccepted(BaseModel):
    accepted: int
    results: list[EventAccepted]


class EventTypes(BaseModel):
    standard: dict[str, str]
    declared: list[str] = Field(description="Custom types the deployed playbooks react to.")


@router.post(
    "/events", status_code=status.HTTP_202_ACCEPTED, response_model=EventAccepted, responses=ERRORS
)
async def post_event(
    event: EventIn,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    database: DatabaseDep,
    _: IngestDep,
) -> EventAccepted:
    """Accept one customer event; the customer's journeys act on it asynchronously.

    Repeating an event with the same idempotency_key answers the same and has no second
    effect. Late events are honoured in order; events dated more than a few minutes in the
    future are refused.
    """
    deployment = await plans.current_deployment()
    accepted = accept(event, deployment, plans, settings, "")
    await signal_with_start(temporal, settings, EventSignal(event=accepted, deployment=deployment))
    await asyncio.to_thread(record_events, database, [accepted], settings.reporting_timezone)
    return answer(accepted)


@router.post(
    "/events:batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=ERRORS,
)
async def post_events(
    batch: EventBatch,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    database: DatabaseDep,
    _: IngestDep,
) -> BatchAccepted:
    """Accept up to 1,000 events at once; each customer's events reach it in one signal,
    in the order they happened (by occurred_at). Every event is checked before any is sent."""
    if len(batch.events) > settings.max_batch_events:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(batch.events)} events in one batch: send at most {settings.max_batch_events}",
        )
    deployment = await plans.current_deployment()
    accepted = [
        accept(e, deployment, plans, settings, f"events.{i}.") for i, e in enumerate(batch.events)
    ]
    by_customer: dict[str, list[CustomerEvent]] = defaultdict(list)
    for event in accepted:
        by_customer[event.customer_id].append(event)
    gate = asyncio.Semaphore(CONCURRENT_SIGNALS)

    async def send(events: list[CustomerEvent]) -> None:
        # A customer's events act in the order they happened, whatever order they came in
        # (stable: events of the same instant keep the order given).
        events = sorted(events, key=lambda e: e.occurred_at)
        async with gate:
            await signal_with_start(
                temporal, settings, EventSignal(events=events, deployment=deployment)
            )

    await asyncio.gather(*(send(events) for events in by_customer.values()))
    await asyncio.to_thread(record_events, database, accepted, settings.reporting_timezone)
    return BatchAccepted(accepted=len(accepted), results=[answer(e) for e in accepted])


@router.get("/event-types", response_model=EventTypes, responses=ERRORS)
async def get_event_types(plans: PlanStoreDep, _: IngestDep) -> EventTypes:
    """The standard event catalogue and the custom types the deployed playbooks declare."""
    deployment = await plans.current_deployment()
    declared = allowed_types(plans, deployment.model_dump_json()) - set(STANDARD_EVENT_TYPES)
    return EventTypes(standard=STANDARD_EVENT_TYPES, declared=sorted(declared))


def accept(
    event: EventIn, deployment: Deployment, plans: PlanStore, settings: Settings, where: str
) -> CustomerEvent:
    now = datetime.now(UTC)
    skew = settings.max_event_skew_seconds
    if event.occurred_at and event.occurred_at > now + timedelta(seconds=skew):
        raise ApiError.invalid(
            f"{where}occurred_at",
            f"{event.occurred_at} is in the future; check the sender's clock and time zone",
            limit=f"at most {skew} s ahead of the server's clock (SOPFLOW_MAX_EVENT_SKEW_SECONDS)",
        )
    known = allowed_types(plans, deployment.model_dump_json())
    if event.type not in known:
        close = nearest(event.type, known)
        hint = f", did you mean '{close}'?" if close else ""
        raise ApiError.invalid(
            f"{where}type",
            f"unknown event type '{event.type}'{hint}; use a standard type "
            "(GET /v1/event-types) or one a deployed playbook declares",
            limit="a standard type or one a deployed playbook declares",
            nearest=close,
        )
    return CustomerEvent(
        customer_id=event.customer_id,
        type=event.type,
        occurred_at=event.occurred_at or now,
        data=event.data,
        idempotency_key=event.idempotency_key or uuid.uuid4().hex,
    )


def answer(event: CustomerEvent) -> EventAccepted:
    return EventAccepted(
        customer_id=event.customer_id,
        idempotency_key=event.idempotency_key,
        workflow_id=customer_workflow_id(event.customer_id),
    )


def allowed_types(plans: PlanStore, deployment_json: str) -> set[str]:
    return set(STANDARD_EVENT_TYPES) | _declared(plans, deployment_json)


@lru_cache(maxsize=64)
def _declared(plans: PlanStore, deployment_json: str) -> frozenset[str]:
    # Keyed by the deployment itself: a new deployment is a new key, never a stale answer.
    deployment = Deployment.model_validate_json(deployment_json)
    loaded = [plans.load(v) for v in deployment.playbooks.values()]
    profile = plans.load_profile(deployment.profile) if deployment.profile else None
    return frozenset(declared_event_types([p for p in loaded if p], profile))
