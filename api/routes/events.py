"""POST /v1/events: hand a customer event to that customer's workflow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, status
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import IngestDep, PlanStoreDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.models import ErrorResponse, EventAccepted, EventIn
from sopflow.settings import Settings
from workflows.contracts import (
    EVENT_SIGNAL,
    WORKFLOW_NAME,
    CustomerWorkflowInput,
    EventSignal,
    WorkflowOptions,
    customer_workflow_id,
)
from workflows.state import CustomerEvent

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventAccepted,
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def post_event(
    event: EventIn,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    _: IngestDep,
) -> EventAccepted:
    """Accept one customer event; the customer's journeys act on it asynchronously."""
    accepted = CustomerEvent(
        customer_id=event.customer_id,
        type=event.type,
        occurred_at=event.occurred_at or datetime.now(UTC),
        data=event.data,
        idempotency_key=event.idempotency_key or uuid.uuid4().hex,
    )
    signal = EventSignal(event=accepted, deployment=plans.deployment())
    workflow_id = await signal_with_start(temporal, settings, signal)
    return EventAccepted(
        customer_id=accepted.customer_id,
        idempotency_key=accepted.idempotency_key,
        workflow_id=workflow_id,
    )


async def signal_with_start(client: Client, settings: Settings, signal: EventSignal) -> str:
    """Signal the customer's workflow, starting it on the customer's first event."""
    customer_id = signal.event.customer_id
    workflow_id = customer_workflow_id(customer_id)
    start_input = CustomerWorkflowInput(
        customer_id=customer_id,
        options=WorkflowOptions(publish_search_attributes=settings.publish_search_attributes),
    )
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            start_input,
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            start_signal=EVENT_SIGNAL,
            start_signal_args=[signal],
        )
    except RPCError as e:
        raise ApiError(
            503, "temporal_unavailable", f"Temporal did not accept the event: {e}"
        ) from e
    return workflow_id
