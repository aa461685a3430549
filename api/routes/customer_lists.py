"""Customer lists from Temporal visibility, and manual tagging by staff."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from api.deps import OperatorDep, PlanStoreDep, SettingsDep, StaffDep, TemporalDep
from api.errors import ApiError
from api.models import CUSTOMER_ID_PATTERN, ErrorResponse
from sopflow.core.state import CustomerEvent
from sopflow.language.models import NAME_PATTERN
from workflows.client import signal_with_start
from workflows.contracts import (
    LIFECYCLE_SEARCH_ATTRIBUTE,
    STAGES_SEARCH_ATTRIBUTE,
    TAGS_SEARCH_ATTRIBUTE,
    TIER_SEARCH_ATTRIBUTE,
    WORKFLOW_NAME,
    EventSignal,
)

router = APIRouter(prefix="/v1", tags=["customers"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}
# Values go into a visibility query: only characters that cannot end a quoted string.
SAFE_VALUE = r"^[^'\"\\\s]{1,200}$"
STAGES = SearchAttributeKey.for_keyword_list(STAGES_SEARCH_ATTRIBUTE)
TAGS = SearchAttributeKey.for_keyword_list(TAGS_SEARCH_ATTRIBUTE)
TIER = SearchAttributeKey.for_keyword(TIER_SEARCH_ATTRIBUTE)
LIFECYCLE = SearchAttributeKey.for_keyword(LIFECYCLE_SEARCH_ATTRIBUTE)


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


def _query(
    plans: PlanStoreDep,
    playbook: str | None,
    stage: str | None,
    tag: str | None,
    tier: str | None,
    lifecycle: str | None,
) -> str:
    clauses = [f"WorkflowType = '{WORKFLOW_NAME}'", "ExecutionStatus = 'Running'"]
    if stage and not playbook:
        raise ApiError.invalid("stage", "give the playbook too")
    if playbook and stage:
        clauses.append(f"{STAGES_SEARCH_ATTRIBUTE} = '{playbook}:{stage}'")
    elif playbook:
        version = plans.deployment().playbooks.get(playbook)
        plan = plans.load(version) if version else None
        if plan is None:
            raise ApiError(404, "playbook_not_found", f"no deployed playbook '{playbook}'")
        listed = ", ".join(f"'{playbook}:{s}'" for s in plan.stages)
        clauses.append(f"{STAGES_SEARCH_ATTRIBUTE} IN ({listed})")
    if tag:
        clauses.append(f"{TAGS_SEARCH_ATTRIBUTE} = '{tag}'")
    if tier:
        clauses.append(f"{TIER_SEARCH_ATTRIBUTE} = '{tier}'")
    if lifecycle:
        clauses.append(f"{LIFECYCLE_SEARCH_ATTRIBUTE} = '{lifecycle}'")
    return " AND ".join(clauses)


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
    # The deployment and the plan are cached; the first read of either is a database read.
    query = await asyncio.to_thread(_query, plans, playbook, stage, tag, tier, lifecycle)
    try:
        token = base64.urlsafe_b64decode(cursor.encode()) if cursor else None
    except ValueError as e:
        raise ApiError.invalid("cursor", "not a cursor from this API") from e
    executions = temporal.list_workflows(query, page_size=limit, next_page_token=token)
    try:
        await executions.fetch_next_page()
    except RPCError as e:
        if token is not None:  # Temporal could not use the page token it is handed
            raise ApiError.invalid("cursor", "not a cursor from this API") from e
        raise
    customers = []
    for execution in executions.current_page or []:
        attributes = execution.typed_search_attributes
        customers.append(
            CustomerSummary(
                customer_id=execution.id.removeprefix("customer/"),
                stages=list(attributes.get(STAGES) or []),
                tags=list(attributes.get(TAGS) or []),
                tier=attributes.get(TIER),
                lifecycle=attributes.get(LIFECYCLE),
            )
        )
    following = executions.next_page_token
    return CustomerPage(
        customers=customers,
        next_cursor=base64.urlsafe_b64encode(following).decode() if following else None,
    )


async def _change_tag(
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    customer_id: str,
    tag: str,
    kind: str,
) -> TagChanged:
    if not re.match(r"^[a-z][a-z0-9_]*:\S+$", tag):
        raise ApiError.invalid("tag", f"'{tag}' is not group:value", limit="group:value")
    event = CustomerEvent(
        customer_id=customer_id,
        type=kind,
        occurred_at=datetime.now(UTC),
        data={"tag": tag},
        idempotency_key=f"{kind}:{uuid.uuid4().hex}",
    )
    await signal_with_start(
        temporal, settings, EventSignal(event=event, deployment=await plans.current_deployment())
    )
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
    settings: SettingsDep,
    _: StaffDep,
) -> TagChanged:
    """Tag a customer by hand (conditions and tiers react as to any tag)."""
    return await _change_tag(temporal, plans, settings, customer_id, tag, "tag.added")


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
    settings: SettingsDep,
    _: StaffDep,
) -> TagChanged:
    """Remove a tag by hand."""
    return await _change_tag(temporal, plans, settings, customer_id, tag, "tag.removed")
