"""Customers: search, and one customer's profile, journeys, tasks and full timeline."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.console.auth import ConsoleError, User, UserDep
from api.console.rendering import render
from api.console.views import TimelineRow, timeline_rows
from api.deps import DatabaseDep, PlanStoreDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.models import CUSTOMER_ID_PATTERN
from api.routes.customer_lists import SAFE_VALUE, CustomerSummary, list_customers
from api.routes.customers import get_customer
from api.routes.playbooks import _deployed
from sopflow.core.state import TimelineEntry
from sopflow.language.models import NAME_PATTERN
from sopflow.store import console_queries as queries
from workflows.contracts import CustomerView

router = APIRouter()
PAGE = 100


def _checked(value: str | None, pattern: str, field: str) -> str | None:
    """A filter goes into a visibility query: only the characters the API allows."""
    if not value:
        return None
    if not re.fullmatch(pattern, value):
        raise ConsoleError(422, f"{field}: '{value}' is not a valid value")
    return value


@router.get("/customers")
async def customers_page(
    request: Request,
    user: UserDep,
    database: DatabaseDep,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    id: Annotated[str, Query(max_length=128)] = "",
    tag: str = "",
    stage: str = "",
    tier: str = "",
    lifecycle: str = "",
    cursor: str | None = None,
) -> Response:
    prefix = id.strip()
    found: list[CustomerSummary] = []
    next_cursor = None
    filtered = bool(tag or stage or tier or lifecycle)
    if user.staff_id is not None:
        # Staff search only among their own customers (those with a task of theirs).
        ids = await asyncio.to_thread(queries.staff_customer_ids, database, user.staff_id, prefix)
        found = [_bare(i) for i in ids]
        filtered = False
    elif filtered:
        playbook, _, stage_name = stage.partition(":")
        page = await list_customers(
            temporal,
            plans,
            user.principal,
            playbook=_checked(playbook, NAME_PATTERN, "stage"),
            stage=_checked(stage_name, NAME_PATTERN, "stage"),
            tag=_checked(tag, SAFE_VALUE, "tag"),
            tier=_checked(tier, NAME_PATTERN, "tier"),
            lifecycle=_checked(lifecycle, NAME_PATTERN, "lifecycle"),
            limit=PAGE,
            cursor=cursor,
        )
        found = [c for c in page.customers if c.customer_id.startswith(prefix)]
        next_cursor = page.next_cursor
    else:
        # By id alone: the journey ledger knows every customer, active or not.
        ids = await asyncio.to_thread(queries.customers_like, database, prefix, PAGE)
        found = [_bare(i) for i in ids]
    stages = [f"{p.name}:{s}" for p in _deployed(plans) for s in p.stages]
    context: dict[str, Any] = {
        "customers": found,
        "filtered": filtered,
        "next_cursor": next_cursor,
        "query": {"id": prefix, "tag": tag, "stage": stage, "tier": tier, "lifecycle": lifecycle},
        "stages": stages,
    }
    return render(request, "customers.html", context, user=user)


def _bare(customer_id: str) -> CustomerSummary:
    return CustomerSummary(customer_id=customer_id, stages=[], tags=[], tier=None, lifecycle=None)


async def _view_for(user: User, database: Any, temporal: Any, customer_id: str) -> CustomerView:
    """The customer's live view (the API's own query); staff only for their customers."""
    missing = ConsoleError(404, f"no customer '{customer_id}'")
    if not re.fullmatch(CUSTOMER_ID_PATTERN, customer_id):
        raise missing
    try:
        # The API's own route: a staff member reads only the customers they serve.
        return await get_customer(temporal, database, user.principal, customer_id=customer_id)
    except ApiError as e:
        if e.status in (403, 404):  # another staff member's customer looks like none at all
            raise missing from e
        raise


@router.get("/customers/{customer_id}")
async def customer_page(
    request: Request,
    customer_id: str,
    user: UserDep,
    database: DatabaseDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> Response:
    view = await _view_for(user, database, temporal, customer_id)
    zone = view.profile.timezone or settings.reporting_timezone
    live = view.timeline
    first_seq = min((e.seq for e in live), default=0)
    older = (
        await asyncio.to_thread(queries.older_timeline, database, customer_id, first_seq)
        if first_seq > 1
        else []
    )
    entries = [
        *reversed(live),
        *(
            TimelineEntry(
                at=e.at,
                kind=e.kind,
                seq=e.seq,
                playbook=e.playbook,
                stage=e.stage,
                channel=e.channel,
                text=e.text,
                idempotency_key=e.idempotency_key,
                detail=e.detail or {},
            )
            for e in older
        ),
    ]
    keys = [e.idempotency_key for e in live if e.idempotency_key]
    delivered = await asyncio.to_thread(queries.delivered_at, database, keys)
    tasks = await asyncio.to_thread(queries.customer_tasks, database, customer_id)
    rows: list[TimelineRow] = timeline_rows(entries, zone)
    context = {
        "view": view,
        "zone": zone,
        "rows": rows,
        "keys": {e.seq: e.idempotency_key for e in live},
        "delivered": delivered,
        "tasks": tasks,
        "older": len(older),
        "older_limit": queries.OLDER_TIMELINE_LIMIT,
    }
    return render(request, "customer.html", context, user=user)
