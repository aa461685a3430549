"""Metrics: the funnel of a playbook, from the journey ledger."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep
from api.errors import ApiError
from api.models import ErrorResponse
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
