"""Read-model queries of the web console (and of GET /v1/overview): aggregates in SQL.

The console's routes hold no SQL; every number they show that the other API routes do not
already compute comes from here. All functions are synchronous (callers run them in a
thread) and read only.

Where a journey stands now is derived from the journey ledger: the last of its `enrolled`,
`stage_entered`, `migrated` and `journey_ended` rows. The worker writes the ledger at every
step, so it trails the workflows by one local activity, as the funnel does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func, not_, or_, select, text

from sopflow.language.plan import Plan
from sopflow.store.database import Database
from sopflow.store.keys import Principal, Role
from sopflow.store.tables import (
    MESSAGES,
    POSITIONS,
    ApiKey,
    DeliveryRecord,
    JourneyEvent,
    TaskRecord,
)

# Ledger kinds that say which stage a journey is in, or that it ended.
POSITION_KINDS = ("enrolled", "stage_entered", "migrated", "journey_ended")
# Until the WeCom adapter reports confirmations (issue 14), a send "awaits confirmation"
# while a wecom.* message is in the journey ledger and not yet in the delivery ledger.
CONFIRMED_CHANNEL_PREFIX = "wecom."
# Older ledger entries shown on a customer page, beyond what the workflow keeps.
OLDER_TIMELINE_LIMIT = 1000


def principal_of(database: Database, key_id: str) -> Principal | None:
    """The principal of an unrevoked key, by its id (a console session names only the id)."""
    with database.session() as session:
        key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return Principal(key.key_id, key.name, Role(key.role), key.staff_id)


# --------------------------------------------------------------------------- overview


class StageNow(BaseModel):
    stage: str
    customers: int = Field(description="Customers whose journey is in this stage now.")


class PlaybookOverview(BaseModel):
    name: str
    title: str | None
    version: str
    customers: int = Field(description="Customers with an active journey of the playbook.")
    stages: list[StageNow]
    goals: int = Field(description="Goal conversions since `since`.")
    sent: int = Field(
        description="Messages since `since` that reached their channel (the delivery ledger)."
    )
    suppressed: int = Field(description="Sends suppressed by a contact cap since `since`.")
    failed: int = Field(description="Sends that failed to render since `since`.")
    undelivered: int = Field(
        description="Messages since `since` that have not reached their channel "
        "(retrying, refused, or awaiting a staff member's confirmation)."
    )
    awaiting_confirmation: int = Field(
        description="WeCom sends not yet confirmed by their staff member (any age)."
    )


class Overview(BaseModel):
    since: datetime = Field(description="Start of the week the weekly figures count from.")
    playbooks: list[PlaybookOverview]


# Literal conditions, the same as the partial indexes' (migration 0004): a bound
# parameter would hide from the planner that the index covers the query.
POSITIONS_SQL = text(POSITIONS)
MESSAGES_SQL = text(MESSAGES)


def stage_counts(database: Database) -> dict[str, dict[str, int]]:
    """playbook -> stage -> customers whose journey is in that stage now."""
    ledger = JourneyEvent.__table__
    latest = (
        select(ledger.c.playbook, ledger.c.customer_id, func.max(ledger.c.seq).label("seq"))
        .where(POSITIONS_SQL, ledger.c.playbook.is_not(None))
        .group_by(ledger.c.playbook, ledger.c.customer_id)
        .subquery()
    )
    query = (
        select(ledger.c.playbook, ledger.c.stage, func.count())
        .join(
            latest,
            and_(
                ledger.c.playbook == latest.c.playbook,
                ledger.c.customer_id == latest.c.customer_id,
                ledger.c.seq == latest.c.seq,
            ),
        )
        .where(POSITIONS_SQL, ledger.c.kind != "journey_ended")
        .group_by(ledger.c.playbook, ledger.c.stage)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    with database.engine.connect() as connection:
        for playbook, stage, count in connection.execute(query):
            counts[playbook][stage] = count
    return dict(counts)


def _kind_counts(
    database: Database, playbooks: list[str], since: datetime
) -> dict[tuple[str, str], int]:
    ledger = JourneyEvent.__table__
    query = (
        select(ledger.c.playbook, ledger.c.kind, func.count())
        .where(
            ledger.c.playbook.in_(playbooks),  # the funnel's index: playbook, kind
            ledger.c.kind.in_(("goal_reached", "suppressed", "send_failed")),
            ledger.c.at >= since,
        )
        .group_by(ledger.c.playbook, ledger.c.kind)
    )
    with database.engine.connect() as connection:
        return {(p, k): n for p, k, n in connection.execute(query)}


def _delivered() -> Any:
    """Reached its channel: handed over (status null) or, for WeCom, sent."""
    status = DeliveryRecord.__table__.c.status
    return _in_delivery_ledger(or_(status.is_(None), status.in_(("delivered", "sent"))))


def _in_delivery_ledger(condition: Any) -> Any:
    ledger = JourneyEvent.__table__
    deliveries = DeliveryRecord.__table__
    return (
        select(deliveries.c.idempotency_key)
        .where(deliveries.c.idempotency_key == ledger.c.idempotency_key, condition)
        .exists()
    )


def _awaiting() -> Any:
    """A wecom.* message not handed over yet (not in the delivery ledger) or handed over
    and awaiting the staff member's confirmation."""
    ledger = JourneyEvent.__table__
    status = DeliveryRecord.__table__.c.status
    return and_(
        MESSAGES_SQL,
        ledger.c.channel.like(f"{CONFIRMED_CHANNEL_PREFIX}%"),
        not_(_in_delivery_ledger(or_(status.is_(None), status != "awaiting_confirmation"))),
    )


def _message_counts(database: Database, since: datetime) -> dict[str, tuple[int, int]]:
    """playbook -> (messages recorded since, of which delivered)."""
    ledger = JourneyEvent.__table__
    query = (
        select(ledger.c.playbook, func.count(), func.sum(case((_delivered(), 1), else_=0)))
        .where(MESSAGES_SQL, ledger.c.at >= since)
        .group_by(ledger.c.playbook)
    )
    with database.engine.connect() as connection:
        return {p: (n, int(d or 0)) for p, n, d in connection.execute(query)}


def _awaiting_counts(database: Database) -> dict[str, int]:
    ledger = JourneyEvent.__table__
    query = select(ledger.c.playbook, func.count()).where(_awaiting()).group_by(ledger.c.playbook)
    with database.engine.connect() as connection:
        return {p: n for p, n in connection.execute(query)}


def overview(database: Database, plans: Sequence[Plan], since: datetime) -> Overview:
    """Every deployed playbook: customers per stage now, and the week's figures."""
    now = stage_counts(database)
    kinds = _kind_counts(database, [p.name for p in plans], since)
    messages = _message_counts(database, since)
    awaiting = _awaiting_counts(database)
    rows = []
    for plan in plans:
        counts = now.get(plan.name, {})
        order = list(plan.stages) + sorted(set(counts) - set(plan.stages))
        rows.append(
            PlaybookOverview(
                name=plan.name,
                title=plan.title,
                version=plan.version,
                customers=sum(counts.values()),
                stages=[StageNow(stage=s, customers=counts.get(s, 0)) for s in order],
                goals=kinds.get((plan.name, "goal_reached"), 0),
                sent=messages.get(plan.name, (0, 0))[1],
                suppressed=kinds.get((plan.name, "suppressed"), 0),
                failed=kinds.get((plan.name, "send_failed"), 0),
                undelivered=messages.get(plan.name, (0, 0))[0] - messages.get(plan.name, (0, 0))[1],
                awaiting_confirmation=awaiting.get(plan.name, 0),
            )
        )
    return Overview(since=since, playbooks=rows)


# --------------------------------------------------------------------------- staff


def staff_customers_query(staff_id: str) -> Any:
    """The customers of a staff member: those with a task assigned to them."""
    return select(TaskRecord.customer_id).where(TaskRecord.assignee == staff_id).distinct()


def staff_customer_ids(
    database: Database, staff_id: str, prefix: str = "", limit: int = 200
) -> list[str]:
    query = staff_customers_query(staff_id)
    if prefix:
        query = query.where(TaskRecord.customer_id.startswith(prefix, autoescape=True))
    query = query.order_by(TaskRecord.customer_id).limit(limit)
    with database.engine.connect() as connection:
        return [row[0] for row in connection.execute(query)]


@dataclass(frozen=True)
class PendingSend:
    customer_id: str
    playbook: str | None
    stage: str | None
    channel: str | None
    text: str | None
    at: datetime


def awaiting_confirmation(
    database: Database, staff_id: str | None, limit: int = 200
) -> list[PendingSend]:
    """WeCom sends not yet confirmed, oldest first; a staff member sees their customers'."""
    ledger = JourneyEvent.__table__
    customers = staff_customers_query(staff_id) if staff_id is not None else None
    query = (
        select(
            ledger.c.customer_id,
            ledger.c.playbook,
            ledger.c.stage,
            ledger.c.channel,
            ledger.c.text,
            ledger.c.at,
        )
        .where(
            _awaiting(), *([ledger.c.customer_id.in_(customers)] if customers is not None else [])
        )
        .order_by(ledger.c.at)
        .limit(limit)
    )
    with database.engine.connect() as connection:
        return [PendingSend(*row) for row in connection.execute(query)]


# --------------------------------------------------------------------------- customers


def customer_tasks(database: Database, customer_id: str) -> list[TaskRecord]:
    with database.session() as session:
        query = select(TaskRecord).where(TaskRecord.customer_id == customer_id)
        return list(session.scalars(query.order_by(TaskRecord.created_at)))


def delivered_at(database: Database, keys: Sequence[str]) -> dict[str, datetime]:
    """When each of these effects reached its channel (the delivery ledger)."""
    if not keys:
        return {}
    query = select(DeliveryRecord.idempotency_key, DeliveryRecord.delivered_at).where(
        DeliveryRecord.idempotency_key.in_(list(keys))
    )
    with database.session() as session:  # the ORM's column types hand back aware UTC times
        return {key: at for key, at in session.execute(query).all()}


def older_timeline(
    database: Database, customer_id: str, before_seq: int, limit: int = OLDER_TIMELINE_LIMIT
) -> list[JourneyEvent]:
    """Ledger entries older than what the workflow keeps (it holds the last 500), newest
    first. The ledger keeps kind, text and detail; reasons that live in an entry's error
    (a cap, a refusal) are in the workflow's view only."""
    with database.session() as session:
        query = (
            select(JourneyEvent)
            .where(JourneyEvent.customer_id == customer_id, JourneyEvent.seq < before_seq)
            .order_by(JourneyEvent.seq.desc())
            .limit(limit)
        )
        return list(session.scalars(query))


def known_customer(database: Database, customer_id: str) -> bool:
    """Does the read model know this customer (a ledger entry or a task)?"""
    ledger = select(JourneyEvent.seq).where(JourneyEvent.customer_id == customer_id).limit(1)
    with database.engine.connect() as connection:
        return connection.execute(ledger).first() is not None


def customers_like(database: Database, prefix: str, limit: int = 50) -> list[str]:
    """Customer ids of the journey ledger that start with `prefix`."""
    query = (
        select(JourneyEvent.customer_id)
        .where(JourneyEvent.customer_id.startswith(prefix, autoescape=True))
        .distinct()
        .order_by(JourneyEvent.customer_id)
        .limit(limit)
    )
    with database.engine.connect() as connection:
        return [row[0] for row in connection.execute(query)]
