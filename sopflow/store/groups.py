"""Group chats in the read model: each group with its owner, tags and members, projected
from the group's own journey ledger; the lists and metrics the API shows.

A group's workflow records what it learns in its timeline (`group_updated`,
`member_joined`, `member_left`, tags, messages) like any subject; the worker writes that
timeline to the journey ledger under the group's subject id (`group/<chat_id>`), and in
the same transaction this module applies the new entries to `group_chats` and
`group_members`. Entries are applied once, in sequence order: `updated_seq` is the last
one applied, so a retried write changes nothing.

Each member remembers the group message they joined after (the group's latest message
before their joining) and the one they left after: the metrics of a group playbook count
who joined and left after each of its messages, and how many who joined through it
converted (a goal reached or an order paid after joining).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from sopflow.core.state import TimelineEntry
from sopflow.language.subjects import GROUP_PREFIX, bare_id, group_subject
from sopflow.store.database import Database
from sopflow.store.inserts import insert_ignoring_duplicates as _insert_ignoring_duplicates
from sopflow.store.tables import Base, JourneyEvent, PaidOrder, UtcDateTime

WHEN = UtcDateTime()  # aware datetimes in and out, SQLite too
GROUPS = Table(
    "group_chats",
    Base.metadata,
    Column("chat_id", String(128), primary_key=True),
    Column("owner", String(100), index=True),
    Column("name", Text),
    Column("member_count", Integer, nullable=False, default=0),
    Column("tags", JSON, nullable=False, default=list),
    Column("created_at", WHEN),
    Column("dismissed_at", WHEN),
    # The group's latest message: who joins now joined after it.
    Column("last_message_key", String(300)),
    Column("last_message_playbook", String(100)),
    Column("updated_seq", Integer, nullable=False, default=0),
)
MEMBERS = Table(
    "group_members",
    Base.metadata,
    Column("chat_id", String(128), primary_key=True),
    Column("member_id", String(128), primary_key=True, index=True),
    Column("member_type", String(10), nullable=False),
    Column("status", String(10), nullable=False),  # member | left
    Column("joined_at", WHEN, nullable=False),
    Column("left_at", WHEN),
    Column("joined_after", String(300), index=True),
    Column("joined_after_playbook", String(100), index=True),
    Column("left_after", String(300), index=True),
)
# At most this many groups or messages in one answer.
MAX_ROWS = 500
PROJECTED_KINDS = frozenset(
    {"group_updated", "member_joined", "member_left", "message", "tag_added", "tag_removed"}
)


# --------------------------------------------------------------------------- projection


def project_group(
    session: Session | Connection, subject_id: str, entries: Sequence[TimelineEntry]
) -> None:
    """Apply a group's new timeline entries to its row and its members (once each)."""
    chat_id = bare_id(subject_id)
    _insert_ignoring_duplicates(
        session, GROUPS, [{"chat_id": chat_id, "tags": [], "member_count": 0, "updated_seq": 0}]
    )
    row = session.execute(select(GROUPS).where(GROUPS.c.chat_id == chat_id)).one()
    fresh = sorted((e for e in entries if e.seq > row.updated_seq), key=lambda e: e.seq)
    if not fresh:
        return
    group: dict[str, Any] = {
        "owner": row.owner,
        "name": row.name,
        "tags": list(row.tags or []),
        "created_at": row.created_at,
        "dismissed_at": row.dismissed_at,
        "last_message_key": row.last_message_key,
        "last_message_playbook": row.last_message_playbook,
    }
    for entry in fresh:
        if entry.kind in PROJECTED_KINDS:
            _apply(session, chat_id, group, entry)
    group["updated_seq"] = fresh[-1].seq
    group["member_count"] = session.execute(
        select(func.count())
        .select_from(MEMBERS)
        .where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.status == "member")
    ).scalar_one()
    session.execute(update(GROUPS).where(GROUPS.c.chat_id == chat_id).values(group))


def _apply(
    session: Session | Connection, chat_id: str, group: dict[str, Any], entry: TimelineEntry
) -> None:
    detail = entry.detail
    match entry.kind:
        case "group_updated":
            for key in ("owner", "name"):
                if isinstance(detail.get(key), str):
                    group[key] = detail[key]
            if group["created_at"] is None:
                group["created_at"] = entry.at
            if detail.get("status") == "dismissed":
                group["dismissed_at"] = entry.at
        case "message":
            group["last_message_key"] = entry.idempotency_key
            group["last_message_playbook"] = entry.playbook
        case "tag_added" | "tag_removed":
            tag = detail.get("tag")
            tags = [t for t in group["tags"] if t != tag]
            group["tags"] = tags + ([tag] if entry.kind == "tag_added" and tag else [])
        case "member_joined":
            member = str(detail.get("member"))
            values = {
                "member_type": str(detail.get("member_type", "customer")),
                "status": "member",
                "joined_at": entry.at,
                "left_at": None,
                "joined_after": group["last_message_key"],
                "joined_after_playbook": group["last_message_playbook"],
                "left_after": None,
            }
            new = _insert_ignoring_duplicates(
                session, MEMBERS, [{"chat_id": chat_id, "member_id": member, **values}]
            )
            if not new:  # joined again after leaving: a new stay
                session.execute(_member(chat_id, member).values(values))
        case "member_left":
            member = str(detail.get("member"))
            session.execute(
                _member(chat_id, member).values(
                    status="left", left_at=entry.at, left_after=group["last_message_key"]
                )
            )


def _member(chat_id: str, member: str) -> Any:
    return update(MEMBERS).where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.member_id == member)


def is_group(subject_id: str) -> bool:
    return subject_id.startswith(GROUP_PREFIX)


# --------------------------------------------------------------------------- queries


class GroupSummary(BaseModel):
    chat_id: str
    owner: str | None
    name: str | None
    member_count: int
    tags: list[str]
    stages: list[str] = Field(description="`<playbook>:<stage>` of its active journeys.")
    created_at: datetime | None
    dismissed_at: datetime | None


class GroupMember(BaseModel):
    member_id: str
    member_type: str = Field(description="customer or staff")
    status: str = Field(description="member, or left")
    joined_at: datetime
    left_at: datetime | None
    joined_after: str | None = Field(
        description="The idempotency key of the group message before their joining."
    )
    joined_after_playbook: str | None


def _positions(connection: Connection, subjects: Sequence[str] | None) -> dict[str, list[str]]:
    """subject -> `<playbook>:<stage>` of its journeys that have not ended."""
    ledger = JourneyEvent.__table__
    kinds = ("enrolled", "stage_entered", "migrated", "journey_ended")
    where = [ledger.c.kind.in_(kinds), ledger.c.customer_id.like(f"{GROUP_PREFIX}%")]
    if subjects is not None:
        where.append(ledger.c.customer_id.in_(list(subjects)))
    latest = (
        select(ledger.c.customer_id, ledger.c.playbook, func.max(ledger.c.seq).label("seq"))
        .where(*where)
        .group_by(ledger.c.customer_id, ledger.c.playbook)
        .subquery()
    )
    query = select(ledger.c.customer_id, ledger.c.playbook, ledger.c.stage, ledger.c.kind).join(
        latest,
        and_(ledger.c.customer_id == latest.c.customer_id, ledger.c.seq == latest.c.seq),
    )
    found: dict[str, list[str]] = defaultdict(list)
    for subject, playbook, stage, kind in connection.execute(query):
        if kind != "journey_ended":
            found[subject].append(f"{playbook}:{stage}")
    return found


def list_groups(
    database: Database,
    owner: str | None = None,
    tag: str | None = None,
    stage: str | None = None,
    limit: int = 100,
) -> list[GroupSummary]:
    """Groups by owner, group tag and `<playbook>:<stage>` (or a playbook's any stage)."""
    query = select(GROUPS).order_by(GROUPS.c.chat_id)
    if owner is not None:
        query = query.where(GROUPS.c.owner == owner)
    with database.engine.connect() as connection:
        rows = list(connection.execute(query))
        positions = _positions(connection, None)
    found = []
    for row in rows:
        stages = sorted(positions.get(group_subject(row.chat_id), []))
        if tag is not None and tag not in (row.tags or []):
            continue
        if stage is not None and not any(s == stage or s.split(":")[0] == stage for s in stages):
            continue
        found.append(
            GroupSummary(
                chat_id=row.chat_id,
                owner=row.owner,
                name=row.name,
                member_count=row.member_count,
                tags=list(row.tags or []),
                stages=stages,
                created_at=row.created_at,
                dismissed_at=row.dismissed_at,
            )
        )
        if len(found) >= min(limit, MAX_ROWS):
            break
    return found


def get_group(database: Database, chat_id: str) -> GroupSummary | None:
    with database.engine.connect() as connection:
        row = connection.execute(select(GROUPS).where(GROUPS.c.chat_id == chat_id)).first()
        if row is None:
            return None
        stages = _positions(connection, [group_subject(chat_id)])
    return GroupSummary(
        chat_id=row.chat_id,
        owner=row.owner,
        name=row.name,
        member_count=row.member_count,
        tags=list(row.tags or []),
        stages=sorted(stages.get(group_subject(chat_id), [])),
        created_at=row.created_at,
        dismissed_at=row.dismissed_at,
    )


def group_members(database: Database, chat_id: str, status: str | None = None) -> list[GroupMember]:
    query = select(MEMBERS).where(MEMBERS.c.chat_id == chat_id).order_by(MEMBERS.c.joined_at)
    if status is not None:
        query = query.where(MEMBERS.c.status == status)
    with database.engine.connect() as connection:
        return [
            GroupMember(
                member_id=r.member_id,
                member_type=r.member_type,
                status=r.status,
                joined_at=r.joined_at,
                left_at=r.left_at,
                joined_after=r.joined_after,
                joined_after_playbook=r.joined_after_playbook,
            )
            for r in connection.execute(query)
        ]


class MessageEffect(BaseModel):
    chat_id: str
    at: datetime
    stage: str | None
    text: str | None
    idempotency_key: str
    joined_after: int = Field(description="Members who joined after it, before the next.")
    left_after: int = Field(description="Members who left after it, before the next.")


class GroupPlaybookMetrics(BaseModel):
    playbook: str
    groups: int = Field(description="Groups with a journey of the playbook.")
    messages: int = Field(description="Group messages the playbook sent (all of them).")
    joined_after_messages: int
    left_after_messages: int
    joined_through: int = Field(
        description="Customers who joined a group after one of its messages."
    )
    converted: int = Field(
        description="Of those, customers with a goal reached or an order paid after joining."
    )
    conversion_rate: float = Field(description="converted / joined_through, 0 without joins.")
    recent: list[MessageEffect] = Field(description="The latest messages (500 at most).")


def group_playbook_metrics(database: Database, playbook: str) -> GroupPlaybookMetrics:
    ledger = JourneyEvent.__table__
    orders = PaidOrder.__table__
    messages_query = (
        select(
            ledger.c.customer_id,
            ledger.c.at,
            ledger.c.stage,
            ledger.c.text,
            ledger.c.idempotency_key,
        )
        .where(
            ledger.c.playbook == playbook,
            ledger.c.kind == "message",
            ledger.c.customer_id.like(f"{GROUP_PREFIX}%"),
        )
        .order_by(ledger.c.at.desc())
    )
    groups_query = select(func.count(func.distinct(ledger.c.customer_id))).where(
        ledger.c.playbook == playbook,
        ledger.c.kind == "enrolled",
        ledger.c.customer_id.like(f"{GROUP_PREFIX}%"),
    )
    with database.engine.connect() as connection:
        messages = list(connection.execute(messages_query))
        groups = connection.execute(groups_query).scalar_one()
        keys = [m.idempotency_key for m in messages if m.idempotency_key]
        joined: dict[str, int] = defaultdict(int)
        left: dict[str, int] = defaultdict(int)
        for column, counts in ((MEMBERS.c.joined_after, joined), (MEMBERS.c.left_after, left)):
            counted = select(column, func.count()).where(column.in_(keys)).group_by(column)
            for key, count in connection.execute(counted):
                counts[key] = count
        through = list(
            connection.execute(
                select(MEMBERS.c.member_id, func.min(MEMBERS.c.joined_at))
                .where(
                    MEMBERS.c.joined_after_playbook == playbook,
                    MEMBERS.c.member_type == "customer",
                )
                .group_by(MEMBERS.c.member_id)
            )
        )
        converted = 0
        for member, joined_at in through:
            goal = connection.execute(
                select(func.count())
                .select_from(ledger)
                .where(
                    ledger.c.customer_id == member,
                    ledger.c.kind == "goal_reached",
                    ledger.c.at >= joined_at,
                )
            ).scalar_one()
            paid = connection.execute(
                select(func.count())
                .select_from(orders)
                .where(orders.c.customer_id == member, orders.c.paid_at >= joined_at)
            ).scalar_one()
            converted += 1 if goal or paid else 0
    recent = [
        MessageEffect(
            chat_id=bare_id(m.customer_id),
            at=m.at,
            stage=m.stage,
            text=m.text,
            idempotency_key=m.idempotency_key or "",
            joined_after=joined.get(m.idempotency_key or "", 0),
            left_after=left.get(m.idempotency_key or "", 0),
        )
        for m in messages[:MAX_ROWS]
    ]
    return GroupPlaybookMetrics(
        playbook=playbook,
        groups=groups,
        messages=len(messages),
        joined_after_messages=sum(joined.values()),
        left_after_messages=sum(left.values()),
        joined_through=len(through),
        converted=converted,
        conversion_rate=round(converted / len(through), 4) if through else 0.0,
        recent=recent,
    )


class TimelineRow(BaseModel):
    seq: int
    at: datetime
    kind: str
    playbook: str | None
    stage: str | None
    channel: str | None
    text: str | None
    idempotency_key: str | None
    detail: dict[str, Any]


def group_timeline(
    database: Database, chat_id: str, before_seq: int | None = None, limit: int = 200
) -> list[TimelineRow]:
    """A group's whole recorded timeline from the journey ledger, newest first (the
    workflow keeps its last 500 entries; the ledger keeps every one)."""
    ledger = JourneyEvent.__table__
    query = select(ledger).where(ledger.c.customer_id == group_subject(chat_id))
    if before_seq is not None:
        query = query.where(ledger.c.seq < before_seq)
    query = query.order_by(ledger.c.seq.desc()).limit(min(limit, MAX_ROWS))
    with database.session() as session:  # the ORM's column types hand back aware UTC times
        return [
            TimelineRow(
                seq=r.seq,
                at=r.at,
                kind=r.kind,
                playbook=r.playbook,
                stage=r.stage,
                channel=r.channel,
                text=r.text,
                idempotency_key=r.idempotency_key,
                detail=r.detail or {},
            )
            for r in session.execute(query)
        ]
