"""Metrics: the funnel of a playbook, from the journey ledger."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep
from api.errors import ApiError
from api.models import ErrorResponse
from sopflow.metrics import Funnel, funnel
from sopflow.readmodel.ledger import Ledger

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
    deployed = plans.deployment().playbooks.get(playbook)
    current = next((v for v in versions if v.version == deployed), versions[-1])
    rows = await asyncio.to_thread(Ledger(database).funnel_rows, playbook)
    return funnel(playbook, list(current.stages), rows)
