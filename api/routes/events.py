"""POST /v1/events and /v1/events:batch: hand customer events to their workflows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, IngestDep, PlanStoreDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.ingest import Accepted, allowed_types, ingest
from api.models import ErrorResponse, EventAccepted, EventIn
from sopflow.language.events import STANDARD_EVENT_TYPES
from workflows.contracts import customer_workflow_id

router = APIRouter(prefix="/v1", tags=["events"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 409, 413, 422, 503)
}


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

    Repeating an event with the same idempotency_key answers the same (with `duplicate`
    true) and has no second effect, however late it comes; the same key with a different
    event is refused (409). Late events are honoured in order; events dated more than a few
    minutes in the future, or before the earliest accepted date, are refused.
    """
    [accepted] = await ingest(
        [event],
        batch=False,
        temporal=temporal,
        plans=plans,
        settings=settings,
        database=database,
    )
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
    """Accept up to 1,000 events at once; each customer's events reach it in order (by
    occurred_at), in as few signals as their size allows. Every event is checked before any
    is sent."""
    if len(batch.events) > settings.max_batch_events:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(batch.events)} events in one batch: send at most {settings.max_batch_events}",
        )
    accepted = await ingest(
        batch.events,
        batch=True,
        temporal=temporal,
        plans=plans,
        settings=settings,
        database=database,
    )
    return BatchAccepted(accepted=len(accepted), results=[answer(a) for a in accepted])


@router.get("/event-types", response_model=EventTypes, responses=ERRORS)
async def get_event_types(plans: PlanStoreDep, _: IngestDep) -> EventTypes:
    """The standard event catalogue and the custom types the deployed playbooks declare."""
    deployment = await plans.current_deployment()
    declared = allowed_types(plans, deployment.model_dump_json()) - set(STANDARD_EVENT_TYPES)
    return EventTypes(standard=STANDARD_EVENT_TYPES, declared=sorted(declared))


def answer(accepted: Accepted) -> EventAccepted:
    event = accepted.event
    return EventAccepted(
        customer_id=event.customer_id,
        idempotency_key=event.idempotency_key,
        workflow_id=customer_workflow_id(event.customer_id),
        duplicate=accepted.duplicate,
    )
