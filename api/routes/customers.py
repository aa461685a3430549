"""GET /v1/customers/{customer_id}: journeys, current stages and the timeline of actions."""

from __future__ import annotations

from fastapi import APIRouter, Path

from api.deps import DatabaseDep, StaffDep, TemporalDep
from api.errors import ApiError
from api.models import CUSTOMER_ID_PATTERN, ErrorResponse
from api.scope import require_served
from workflows.client import describe_customer
from workflows.contracts import CustomerView

router = APIRouter(prefix="/v1", tags=["customers"])


async def existing_customer(temporal: TemporalDep, customer_id: str) -> CustomerView:
    view = await describe_customer(temporal, customer_id)
    if view is None:
        raise ApiError(
            404, "customer_not_found", f"no customer '{customer_id}': send an event for it first"
        )
    return view


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerView,
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def get_customer(
    temporal: TemporalDep,
    database: DatabaseDep,
    principal: StaffDep,
    customer_id: str = Path(pattern=CUSTOMER_ID_PATTERN),
) -> CustomerView:
    """One customer: every journey with its stage, and the actions performed so far. A
    staff key reads only the customers it serves (owns, or has had a task for)."""
    view = await existing_customer(temporal, customer_id)
    await require_served(database, principal, view)
    return view
