"""Customer lists from Temporal visibility, and manual tagging by staff."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep, StaffDep, TemporalDep
from api.errors import ApiError
from api.models import CUSTOMER_ID_PATTERN, ErrorResponse
from api.routes.customers import existing_customer
from api.scope import require_served
from sopflow.core.state import CustomerEvent
from sopflow.language.models import NAME_PATTERN
from sopflow.store.keys import Role
from workflows import client as customers
from workflows.client import signal_customer
from workflows.contracts import EventSignal

router = APIRouter(prefix="/v1", tags=["customers"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}
# Values go into a visibility query: only characters that cannot end a quoted string.
SAFE_VALUE = r"^[^'\"\\\s]{1,200}$"


class CustomerSummary(BaseModel):
    customer_id: str
    stages: list[str] = Field(description="`<playbook>:<stage>` of each active journey.")
    tags: list[str]
    tier: str | None
    lifecycle: str | None


class CustomerPage(BaseModel):
    customers: list[CustomerSummary]
    next_cursor: str | None


class TagChanged(BaseModel):
    customer_id: str
    tag: str
    action: str


def _stages(plans: PlanStoreDep, playbook: str | None, stage: str | None) -> list[str] | None:
    """The `<playbook>:<stage>` values to look for, or None for any."""
    if stage and not playbook:
        raise ApiError.invalid("stage", "give the playbook too")
    if playbook and stage:
        return [f"{playbook}:{stage}"]
    if not playbook:
        return None
    version = plans.deployment().playbooks.get(playbook)
    plan = plans.load(version) if version else None
    if plan is None:
        raise ApiError(404, "playbook_not_found", f"no deployed playbook '{playbook}'")
    return [f"{playbook}:{s}" for s in plan.stages]


@router.get("/customers", response_model=CustomerPage, responses=ERRORS)
async def list_customers(
    temporal: TemporalDep,
    plans: PlanStoreDep,
    _: OperatorDep,
    playbook: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    stage: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    tag: Annotated[str | None, Query(pattern=SAFE_VALUE)] = None,
    tier: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    lifecycle: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> CustomerPage:
    """Customers in a stage of a playbook, with a tag, a tier or a lifecycle stage.

    Served by Temporal's visibility: eventually consistent, a second or so behind.
    """
    query = customers.customers_query(_stages(plans, playbook, stage), tag, tier, lifecycle)
    try:
        token = base64.urlsafe_b64decode(cursor.encode()) if cursor else None
    except (ValueError, binascii.Error) as e:
        raise ApiError(422, "invalid_request", "cursor: not a cursor from this API") from e
    try:
        page, following = await customers.list_customers(temporal, query, limit, token)
    except customers.InvalidPageToken as e:
        raise ApiError(422, "invalid_request", "cursor: not a cursor from this API") from e
    return CustomerPage(
        customers=[
            CustomerSummary(
                customer_id=c.customer_id,
                stages=c.stages,
                tags=c.tags,
                tier=c.tier,
                lifecycle=c.lifecycle,
            )
            for c in page
        ],
        next_cursor=base64.urlsafe_b64encode(following).decode() if following else None,
    )


async def _change_tag(
    temporal: TemporalDep,
    plans: PlanStoreDep,
    database: DatabaseDep,
    principal: StaffDep,
    customer_id: str,
    tag: str,
    kind: str,
) -> TagChanged:
    """Tag an existing customer: a staff key only one it serves; no call creates one."""
    if not re.match(r"^[a-z][a-z0-9_]*:\S+$", tag):
        raise ApiError.invalid("tag", f"'{tag}' is not group:value", limit="group:value")
    if principal.role == Role.STAFF:
        await require_served(database, principal, await existing_customer(temporal, customer_id))
    event = CustomerEvent(
        customer_id=customer_id,
        type=kind,
        occurred_at=datetime.now(UTC),
        data={"tag": tag},
        idempotency_key=f"{kind}:{uuid.uuid4().hex}",
    )
    await signal_customer(temporal, EventSignal(event=event, deployment=plans.deployment()))
    return TagChanged(customer_id=customer_id, tag=tag, action=kind)


CustomerId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN)]
TagValue = Annotated[str, Path(pattern=SAFE_VALUE)]


@router.put(
    "/customers/{customer_id}/tags/{tag}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TagChanged,
    responses=ERRORS,
)
async def add_tag(
    customer_id: CustomerId,
    tag: TagValue,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    database: DatabaseDep,
    principal: StaffDep,
) -> TagChanged:
    """Tag a customer by hand (conditions and tiers react as to any tag). The customer must
    exist (404 otherwise); a staff key tags only the customers it serves."""
    return await _change_tag(temporal, plans, database, principal, customer_id, tag, "tag.added")


@router.delete(
    "/customers/{customer_id}/tags/{tag}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TagChanged,
    responses=ERRORS,
)
async def remove_tag(
    customer_id: CustomerId,
    tag: TagValue,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    database: DatabaseDep,
    principal: StaffDep,
) -> TagChanged:
    """Remove a tag by hand."""
    return await _change_tag(temporal, plans, database, principal, customer_id, tag, "tag.removed")
