"""Groups and staff members as audiences: their events in, their lists and metrics out.

A group chat's events (created, members joining and leaving, a campaign announced) go to
the group's own workflow (`group/<chat_id>`), a staff member's to theirs
(`staff/<userid>`), as a customer's go to theirs. The lists come from the read model
(the groups projected from their journey ledger, moments posts per staff member); a
group's live journeys from its workflow.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.deps import (
    DatabaseDep,
    IngestDep,
    OperatorDep,
    PlanStoreDep,
    SettingsDep,
    StaffDep,
    TemporalDep,
)
from api.errors import ApiError
from api.ingest import allowed_types
from api.models import CUSTOMER_ID_PATTERN, ErrorResponse, EventAccepted
from sopflow.core.state import CustomerEvent
from sopflow.language.diagnostics import did_you_mean
from sopflow.language.events import STANDARD_EVENT_TYPES, standard_types
from sopflow.language.models import EVENT_TYPE_PATTERN
from sopflow.language.subjects import Audience, group_subject, staff_subject
from sopflow.store.groups import (
    GroupMember,
    GroupPlaybookMetrics,
    GroupSummary,
    TimelineRow,
    get_group,
    group_members,
    group_playbook_metrics,
    group_timeline,
    list_groups,
)
from sopflow.store.keys import Principal, Role
from sopflow.store.moments import MomentPost, Moments
from workflows.client import describe_customer, signal_with_start
from workflows.contracts import CustomerView, EventSignal, subject_workflow_id

router = APIRouter(prefix="/v1", tags=["groups and staff"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}
# WeCom's chat ids (wr...) and userids: the same characters as a customer id.
ChatId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, description="The chat id (wr...).")]
UserId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, description="The staff userid.")]


class SubjectEventIn(BaseModel):
    """An event of a group chat or of a staff member."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "group.member_joined",
                    "occurred_at": "2026-11-23T12:00:00+08:00",
                    "data": {"member": "wmXyZ", "join_scene": 3},
                    "idempotency_key": "wecom-chat-7c1d/wmXyZ",
                }
            ]
        },
    )

    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=100)
    occurred_at: AwareDatetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


async def _accept(
    subject: str,
    audience: Audience,
    event: SubjectEventIn,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
) -> EventAccepted:
    now = datetime.now(UTC)
    if event.occurred_at and event.occurred_at > now + timedelta(
        seconds=settings.max_event_skew_seconds
    ):
        raise ApiError(
            422,
            "invalid_request",
            f"occurred_at: {event.occurred_at} is in the future; check the sender's clock "
            "and time zone",
        )
    deployment = plans.deployment()
    # The audience's standard events, and any a deployed playbook declares.
    declared = allowed_types(plans, deployment.model_dump_json()) - set(STANDARD_EVENT_TYPES)
    known = set(standard_types(audience)) | declared
    if event.type not in known and event.type in standard_types(Audience.CUSTOMER):
        raise ApiError(
            422,
            "invalid_request",
            f"type: {event.type} is a customer's event, not a {audience.value}'s: send it "
            "to POST /v1/events with the customer's id",
        )
    if event.type not in known:
        raise ApiError(
            422,
            "invalid_request",
            f"type: unknown event type '{event.type}' for a {audience.value}"
            f"{did_you_mean(event.type, known)}; use a standard type of a "
            f"{audience.value} or one a deployed playbook declares",
        )
    accepted = CustomerEvent(
        customer_id=subject,
        type=event.type,
        occurred_at=event.occurred_at or now,
        data=event.data,
        idempotency_key=event.idempotency_key or uuid.uuid4().hex,
    )
    await signal_with_start(temporal, settings, EventSignal(event=accepted, deployment=deployment))
    return EventAccepted(
        customer_id=subject,
        idempotency_key=accepted.idempotency_key,
        workflow_id=subject_workflow_id(subject),
    )


@router.post(
    "/groups/{chat_id}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventAccepted,
    responses=ERRORS,
)
async def post_group_event(
    chat_id: ChatId,
    event: SubjectEventIn,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    _: IngestDep,
) -> EventAccepted:
    """One event of a group chat (`group.created` with the owner, `group.member_joined`,
    `group.member_left`, `group.updated`, `group.dismissed`, or a type a group playbook
    declares); the group's workflow `group/<chat_id>` acts on it."""
    return await _accept(group_subject(chat_id), Audience.GROUP, event, temporal, plans, settings)


@router.post(
    "/staff/{userid}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventAccepted,
    responses=ERRORS,
)
async def post_staff_event(
    userid: UserId,
    event: SubjectEventIn,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    _: IngestDep,
) -> EventAccepted:
    """One event of a staff member (a type a staff playbook declares, such as
    `offer.announced`); their workflow `staff/<userid>` acts on it."""
    return await _accept(staff_subject(userid), Audience.STAFF, event, temporal, plans, settings)


def _own_staff_id(principal: Principal, asked: str | None, what: str) -> str | None:
    """A staff key sees only its own groups or posts; an operator any."""
    if principal.role != Role.STAFF:
        return asked
    if asked not in (None, principal.staff_id):
        raise ApiError(403, "forbidden", f"a staff key sees only its own {what}")
    return principal.staff_id


@router.get("/groups", response_model=list[GroupSummary], responses=ERRORS)
async def get_groups(
    database: DatabaseDep,
    principal: StaffDep,
    owner: str | None = None,
    tag: Annotated[str | None, Query(description="A group tag, `group:value`.")] = None,
    stage: Annotated[
        str | None, Query(description="`<playbook>:<stage>`, or a playbook for any stage.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[GroupSummary]:
    """Group chats by owner, tag and stage (a staff key: the groups it owns)."""
    owner = _own_staff_id(principal, owner, "groups")
    return await asyncio.to_thread(list_groups, database, owner, tag, stage, limit)


class GroupView(BaseModel):
    chat_id: str
    summary: GroupSummary | None = Field(description="The read model's row (members, tags).")
    live: CustomerView | None = Field(description="Its workflow: journeys, timeline, members.")


async def _visible_group(database: DatabaseDep, principal: Principal, chat_id: str) -> Any:
    summary = await asyncio.to_thread(get_group, database, chat_id)
    if principal.role == Role.STAFF and (summary is None or summary.owner != principal.staff_id):
        raise ApiError(404, "group_not_found", f"no group '{chat_id}' of yours")
    return summary


@router.get("/groups/{chat_id}", response_model=GroupView, responses=ERRORS)
async def get_group_view(
    chat_id: ChatId, database: DatabaseDep, temporal: TemporalDep, principal: StaffDep
) -> GroupView:
    """One group: its row (owner, members, tags, stages) and its live journeys."""
    summary = await _visible_group(database, principal, chat_id)
    live = await describe_customer(temporal, group_subject(chat_id))
    if summary is None and live is None:
        raise ApiError(404, "group_not_found", f"no group '{chat_id}': send an event for it first")
    return GroupView(chat_id=chat_id, summary=summary, live=live)


@router.get("/groups/{chat_id}/members", response_model=list[GroupMember], responses=ERRORS)
async def get_group_members(
    chat_id: ChatId,
    database: DatabaseDep,
    principal: StaffDep,
    status: Annotated[str | None, Query(pattern="^(member|left)$")] = None,
) -> list[GroupMember]:
    """Who joined (and left) the group, and after which group message."""
    await _visible_group(database, principal, chat_id)
    return await asyncio.to_thread(group_members, database, chat_id, status)


@router.get("/groups/{chat_id}/timeline", response_model=list[TimelineRow], responses=ERRORS)
async def get_group_timeline(
    chat_id: ChatId,
    database: DatabaseDep,
    principal: StaffDep,
    before: Annotated[int | None, Query(ge=1, description="Entries before this seq.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[TimelineRow]:
    """The group's recorded timeline, newest first (page with `before`)."""
    await _visible_group(database, principal, chat_id)
    return await asyncio.to_thread(group_timeline, database, chat_id, before, limit)


@router.get("/moments", response_model=list[MomentPost], responses=ERRORS)
async def get_moments(
    database: DatabaseDep,
    principal: StaffDep,
    staff: str | None = None,
    status: Annotated[
        str | None,
        Query(
            pattern="^(awaiting_publication|published|overdue|expired|failed|cancelled)$",
            description="awaiting_publication, published, overdue (reminded), expired, "
            "failed, cancelled",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[MomentPost]:
    """Moments posts with their state, newest first (a staff key: its own)."""
    staff = _own_staff_id(principal, staff, "moments")
    return await asyncio.to_thread(Moments(database).posts, staff, status, limit)


@router.get("/staff/{userid}", response_model=CustomerView, responses=ERRORS)
async def get_staff_view(
    userid: UserId, temporal: TemporalDep, principal: StaffDep
) -> CustomerView:
    """A staff member's own journeys (moments plans) and their timeline."""
    _own_staff_id(principal, userid, "journeys")
    view = await describe_customer(temporal, staff_subject(userid))
    if view is None:
        raise ApiError(
            404, "staff_not_found", f"no journeys of '{userid}': send an event for them first"
        )
    return view


@router.get("/staff/{userid}/moments", response_model=list[MomentPost], responses=ERRORS)
async def get_staff_moments(
    userid: UserId, database: DatabaseDep, principal: StaffDep
) -> list[MomentPost]:
    """One staff member's moments posts with their state."""
    staff = _own_staff_id(principal, userid, "moments")
    return await asyncio.to_thread(Moments(database).posts, staff)


@router.get(
    "/metrics/group-playbooks/{playbook}", response_model=GroupPlaybookMetrics, responses=ERRORS
)
async def get_group_playbook_metrics(
    playbook: str, database: DatabaseDep, plans: PlanStoreDep, _: OperatorDep
) -> GroupPlaybookMetrics:
    """A group playbook's messages, who joined and left after each, and how many of the
    customers who joined through it converted (a goal or an order after joining)."""
    versions = await asyncio.to_thread(plans.versions_of, playbook)
    if not versions:
        raise ApiError(404, "playbook_not_found", f"no playbook '{playbook}'")
    deployed = plans.deployment().playbooks.get(playbook)
    current = next((v for v in versions if v.version == deployed), versions[-1])
    if current.audience != Audience.GROUP.value:
        raise ApiError(
            422,
            "invalid_request",
            f"'{playbook}' is a {current.audience} playbook; these metrics are a group "
            "playbook's (GET /v1/metrics/funnel/{playbook} for any)",
        )
    return await asyncio.to_thread(group_playbook_metrics, database, playbook)
