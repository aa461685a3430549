"""Metrics: the funnel of a playbook, from the journey ledger."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep
from api.errors import ApiError
from api.models import ErrorResponse
from sopflow.language.models import NAME_PATTERN
from sopflow.reports.acquisition import Acquisition
from sopflow.reports.funnel import Funnel, funnel
from sopflow.store.acquisitions import figures, set_cost
from sopflow.store.ledger import Ledger

router = APIRouter(prefix="/v1", tags=["metrics"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404)
}


@router.get("/metrics/funnel/{playbook}", response_model=Funnel, responses=ERRORS)
async def get_funnel(
    playbook: str, database: DatabaseDep, plans: PlanStoreDep, _: OperatorDep
) -> Funnel:
    """Customers entering each stage, stage-to-stage conversion, median time in stage, goal
    conversion rate and messages per channel, over every version of the playbook."""
    versions = await asyncio.to_thread(plans.versions_of, playbook)
    if not versions:
        raise ApiError(404, "playbook_not_found", f"no playbook '{playbook}'")
    deployed = (await plans.current_deployment()).playbooks.get(playbook)
    current = next((v for v in versions if v.version == deployed), versions[-1])
    rows = await asyncio.to_thread(Ledger(database).funnel_rows, playbook)
    return funnel(playbook, list(current.stages), rows)


class DeliveryStates(BaseModel):
    """The delivery ledger's messages and tasks by state."""

    delivered: int = Field(
        description="Handed over and done: log lines, webhooks, staff tasks, a welcome."
    )
    sent: int = Field(description="WeCom sends the staff member confirmed and WeCom delivered.")
    pending_confirmation: int = Field(
        description="WeCom sends in a task that awaits the staff member's confirmation."
    )
    failed: int = Field(
        description="WeCom sends WeCom refused or dropped (the reason is in "
        "each customer's timeline); refused webhooks are in the timeline only."
    )
    cancelled: int = Field(description="WeCom sends cancelled: the journey left the stage.")
    expired: int = Field(description="WeCom sends nobody confirmed in time.")
    by_channel: dict[str, dict[str, int]] = Field(
        description="channel -> state -> count, the same states."
    )


@router.get("/metrics/deliveries", response_model=DeliveryStates, responses=ERRORS)
async def get_deliveries(
    database: DatabaseDep,
    _: OperatorDep,
    playbook: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> DeliveryStates:
    """Messages sent, failed and pending confirmation (and the rest), over every playbook
    or one: a WeCom send counts as sent only once the staff member confirmed it."""
    counts = await asyncio.to_thread(Ledger(database).status_counts, playbook)
    totals: dict[str, int] = {}
    for states in counts.values():
        for state, count in states.items():
            totals[state] = totals.get(state, 0) + count
    return DeliveryStates(
        delivered=totals.get("delivered", 0),
        sent=totals.get("sent", 0),
        pending_confirmation=totals.get("awaiting_confirmation", 0),
        failed=totals.get("failed", 0),
        cancelled=totals.get("cancelled", 0),
        expired=totals.get("expired", 0),
        by_channel=dict(sorted(counts.items())),
    )


class QuarantinedInput(BaseModel):
    customer_id: str
    at: datetime
    input: str | None = Field(description="event, timer, timers or migration")
    type: str | None = Field(default=None, description="The event's type, for an event.")
    idempotency_key: str | None = None
    playbook: str | None = None
    stage: str | None = None
    error: str | None


class Quarantine(BaseModel):
    total: int = Field(description="Inputs quarantined so far, across all customers.")
    recent: list[QuarantinedInput] = Field(description="The latest, newest first.")


@router.get("/metrics/quarantined", response_model=Quarantine, responses=ERRORS)
async def get_quarantined(
    database: DatabaseDep,
    _: OperatorDep,
    recent: Annotated[int, Query(ge=0, le=500)] = 50,
) -> Quarantine:
    """Events and timers the journey core could not process: each was recorded in its
    customer's timeline (kind `quarantined`, with the error), skipped, the customer's state
    kept. A number above zero is worth a look: a playbook or an input the core trips on."""
    total, rows = await asyncio.to_thread(Ledger(database).quarantined, recent)
    return Quarantine(
        total=total,
        recent=[
            QuarantinedInput(
                customer_id=row.customer_id,
                at=row.at,
                input=row.detail.get("input"),
                type=row.detail.get("type"),
                idempotency_key=row.detail.get("idempotency_key"),
                playbook=row.playbook,
                stage=row.stage,
                error=row.detail.get("error"),
            )
            for row in rows
        ],
    )


class CostInputIn(BaseModel):
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="A month: 2026-11")
    channel_code: str = Field(
        default="*",
        min_length=1,
        max_length=100,
        description="An acquisition channel, or * for fixed costs",
    )
    fixed_cost: float = Field(default=0.0, ge=0)
    traffic_cost: float = Field(default=0.0, ge=0)


@router.put("/metrics/costs", response_model=CostInputIn, responses=ERRORS)
async def put_cost(cost: CostInputIn, database: DatabaseDep, _: OperatorDep) -> CostInputIn:
    """Record what a month cost: fixed costs (channel *) and traffic cost per channel."""
    await asyncio.to_thread(
        set_cost, database, cost.period, cost.channel_code, cost.fixed_cost, cost.traffic_cost
    )
    return cost


@router.get("/metrics/acquisition", response_model=Acquisition, responses=ERRORS)
async def get_acquisition(
    database: DatabaseDep,
    _: OperatorDep,
    period: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
) -> Acquisition:
    """New fans per channel, cost per new fan, conversion rate and ROI for one month."""
    return await asyncio.to_thread(figures, database, period)
