"""Audiences in the read model: the deployed segments, each customer's profile projected
from their journey ledger, and the page-by-page evaluation that enrolments read.

A customer's workflow records what changes their profile in its timeline (tags, tier,
lifecycle, `set` attributes, journeys entered and ended); the worker writes that timeline
to the journey ledger, and in the same transaction `project_customer` applies the new
entries to `customer_profiles` (once each, in sequence order: `updated_seq`). Attributes
that events bring (`data.attributes`) are written by the API as it accepts the event, to
a column of their own (`event_attributes`), so the two writers never overwrite each
other; `set` attributes win over them. Orders and the adding time come from the tables
the API already writes (`orders`, `acquisitions`).

An audience is evaluated by the journey core's own guard context (`build_context`), so
its expression means what the same guard would in a playbook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, Integer, String, Table, Text, func, select, update
from sqlalchemy.orm import Session

from sopflow.core import profile as profile_rules
from sopflow.core.context import build_context
from sopflow.core.state import CustomerEvent, OrderRecord, Profile, TimelineEntry
from sopflow.language.guards import evaluate_guard_outcome
from sopflow.language.segments import SegmentPlan
from sopflow.language.subjects import Audience, audience_of
from sopflow.store.database import Database
from sopflow.store.inserts import insert_ignoring_duplicates
from sopflow.store.tables import Acquisition, Base, JourneyEvent, PaidOrder, UtcDateTime

WHEN = UtcDateTime()
SEGMENTS = Table(
    "audiences",
    Base.metadata,
    Column("name", String(100), primary_key=True),
    Column("title", Text),
    Column("expression", Text, nullable=False),
    Column("updated_at", WHEN, nullable=False),
    Column("updated_by", String(200), nullable=False),
)
PROFILES = Table(
    "customer_profiles",
    Base.metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("tags", JSON, nullable=False, default=list),
    Column("tier", String(100)),
    Column("lifecycle", String(100)),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("event_attributes", JSON, nullable=False, default=dict),
    Column("journeys", JSON, nullable=False, default=dict),
    Column("updated_seq", Integer, nullable=False, default=0),
)
PROJECTED_KINDS = frozenset(
    {
        "tag_added",
        "tag_removed",
        "tier_changed",
        "lifecycle_changed",
        "attribute_set",
        "enrolled",
        "stage_entered",
        "migrated",
        "journey_ended",
    }
)
# Customers read per query when an audience is evaluated (a page of a batch, a preview).
SCAN_PAGE = 1_000
SAMPLE_SIZE = 20


def _empty(customer_id: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "tags": [],
        "attributes": {},
        "event_attributes": {},
        "journeys": {},
        "updated_seq": 0,
    }


# --------------------------------------------------------------------------- projection


def project_customer(
    session: Session | Connection, customer_id: str, entries: Sequence[TimelineEntry]
) -> None:
    """Apply a customer's new timeline entries to their profile row (once each)."""
    if audience_of(customer_id) != Audience.CUSTOMER:
        return
    fresh = [e for e in entries if e.kind in PROJECTED_KINDS]
    if not fresh:
        return
    insert_ignoring_duplicates(session, PROFILES, [_empty(customer_id)])
    row = session.execute(select(PROFILES).where(PROFILES.c.customer_id == customer_id)).one()
    fresh = sorted((e for e in fresh if e.seq > row.updated_seq), key=lambda e: e.seq)
    if not fresh:
        return
    values = {
        "tags": list(row.tags or []),
        "tier": row.tier,
        "lifecycle": row.lifecycle,
        "attributes": dict(row.attributes or {}),
        "journeys": dict(row.journeys or {}),
    }
    for entry in fresh:
        apply_entry(values, entry)
    values["updated_seq"] = fresh[-1].seq
    session.execute(update(PROFILES).where(PROFILES.c.customer_id == customer_id).values(values))


def apply_entry(profile: dict[str, Any], entry: TimelineEntry) -> None:
    """One timeline entry's change to a projected profile."""
    detail = entry.detail
    match entry.kind:
        case "tag_added" | "tag_removed":
            tag = detail.get("tag")
            tags = [t for t in profile["tags"] if t != tag]
            profile["tags"] = tags + ([tag] if entry.kind == "tag_added" and tag else [])
        case "tier_changed":
            profile["tier"] = detail.get("to")
        case "lifecycle_changed":
            profile["lifecycle"] = detail.get("to")
        case "attribute_set" if detail.get("scope") == "customer":
            profile["attributes"].update({k: v for k, v in detail.items() if k != "scope"})
        case "enrolled" | "stage_entered" | "migrated" if entry.playbook and entry.stage:
            profile["journeys"][entry.playbook] = entry.stage
        case "journey_ended" if entry.playbook:
            profile["journeys"].pop(entry.playbook, None)


def record_event_attributes(session: Session | Connection, events: Sequence[CustomerEvent]) -> None:
    """A row for every customer an event came for (so audiences see every customer), and
    the attributes events bring (`data.attributes`) merged into it, bounded as the core
    bounds them."""
    customers = sorted({e.customer_id for e in events if audience_of(e.customer_id) == "customer"})
    insert_ignoring_duplicates(session, PROFILES, [_empty(c) for c in customers])
    for event in events:
        given = event.data.get("attributes")
        if not isinstance(given, dict) or audience_of(event.customer_id) != Audience.CUSTOMER:
            continue
        where = PROFILES.c.customer_id == event.customer_id
        current = dict(
            session.execute(select(PROFILES.c.event_attributes).where(where)).scalar_one()
        )
        profile_rules.set_attributes(current, given)  # refused ones are left out
        session.execute(update(PROFILES).where(where).values(event_attributes=current))


def rebuild_profiles(database: Database, customers_per_transaction: int = 500) -> int:
    """Project every customer's journey ledger onto their profile: for a read model whose
    ledger predates the projection (entries already applied are skipped, so it may run
    any time). Reads the ledger a customer range at a time. Returns the customers seen."""
    ledger = JourneyEvent.__table__
    customers = select(ledger.c.customer_id).distinct().order_by(ledger.c.customer_id)
    with database.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(customers)]
    for start in range(0, len(ids), customers_per_transaction):
        chunk = ids[start : start + customers_per_transaction]
        query = (
            select(ledger)
            .where(ledger.c.customer_id.in_(chunk), ledger.c.kind.in_(PROJECTED_KINDS))
            .order_by(ledger.c.customer_id, ledger.c.seq)
        )
        by_customer: dict[str, list[TimelineEntry]] = {}
        with database.session() as session, session.begin():
            for row in session.execute(query):
                entry = TimelineEntry(
                    at=row.at,
                    kind=row.kind,
                    seq=row.seq,
                    playbook=row.playbook,
                    stage=row.stage,
                    detail=row.detail or {},
                )
                by_customer.setdefault(row.customer_id, []).append(entry)
            for customer_id, entries in by_customer.items():
                project_customer(session, customer_id, entries)
    return len(ids)


# --------------------------------------------------------------------------- audiences


def save_segments(database: Database, segments: Sequence[SegmentPlan], by: str) -> None:
    """Create or replace audiences by name."""
    now = datetime.now(UTC)
    with database.session() as session, session.begin():
        for segment in segments:
            row = {
                "name": segment.name,
                "title": segment.title,
                "expression": segment.when,
                "updated_at": now,
                "updated_by": by,
            }
            if not insert_ignoring_duplicates(session, SEGMENTS, [row]):
                session.execute(update(SEGMENTS).where(SEGMENTS.c.name == segment.name).values(row))


def load_segment(database: Database, name: str) -> SegmentPlan | None:
    with database.engine.connect() as connection:
        row = connection.execute(select(SEGMENTS).where(SEGMENTS.c.name == name)).first()
    return SegmentPlan(name=row.name, title=row.title, when=row.expression) if row else None


def list_segments(database: Database) -> list[SegmentPlan]:
    with database.engine.connect() as connection:
        rows = connection.execute(select(SEGMENTS).order_by(SEGMENTS.c.name)).all()
    return [SegmentPlan(name=r.name, title=r.title, when=r.expression) for r in rows]


@dataclass(frozen=True)
class SegmentPage:
    """The members of an audience among the customers after `after`, in id order."""

    customer_ids: list[str]
    scanned: int
    # The last customer id looked at: the next page starts after it; None at the end.
    next_after: str | None
    # Customers whose expression could not be evaluated (counted as not members).
    errors: int = 0
    first_error: str | None = None


def segment_page(
    database: Database,
    segment: SegmentPlan,
    after: str | None,
    limit: int = SCAN_PAGE,
    now: datetime | None = None,
) -> SegmentPage:
    """Evaluate the audience on the next `limit` customers of the read model."""
    now = now or datetime.now(UTC)
    query = select(PROFILES).order_by(PROFILES.c.customer_id).limit(limit)
    if after is not None:
        query = query.where(PROFILES.c.customer_id > after)
    with database.engine.connect() as connection:
        rows = connection.execute(query).all()
        ids = [r.customer_id for r in rows]
        orders = _orders(connection, ids)
        added = _added(connection, ids)
    members: list[str] = []
    errors, first_error = 0, None
    for row in rows:
        profile = _profile(row, orders.get(row.customer_id, []), added.get(row.customer_id))
        context = build_context(
            row.customer_id, profile, None, None, now, "Asia/Shanghai", journeys=row.journeys
        )
        outcome = evaluate_guard_outcome(segment.when, context)
        if outcome.value:
            members.append(row.customer_id)
        elif outcome.error is not None:
            errors += 1
            first_error = first_error or outcome.error
    next_after = ids[-1] if len(ids) == limit else None
    return SegmentPage(members, len(ids), next_after, errors, first_error)


@dataclass(frozen=True)
class Preview:
    count: int
    scanned: int
    sample: list[str]
    errors: int
    first_error: str | None


def preview_segment(
    database: Database, segment: SegmentPlan, sample_size: int = SAMPLE_SIZE
) -> Preview:
    """How many customers the audience holds now, and the first few of them."""
    count = scanned = errors = 0
    sample: list[str] = []
    first_error: str | None = None
    after: str | None = None
    while True:
        page = segment_page(database, segment, after)
        count += len(page.customer_ids)
        scanned += page.scanned
        errors += page.errors
        first_error = first_error or page.first_error
        sample += page.customer_ids[: sample_size - len(sample)]
        if page.next_after is None:
            return Preview(count, scanned, sample, errors, first_error)
        after = page.next_after


def _profile(row: Any, orders: list[OrderRecord], added_at: datetime | None) -> Profile:
    profile = Profile(
        tags=list(row.tags or []),
        tier=row.tier,
        lifecycle=row.lifecycle,
        attributes={**(row.event_attributes or {}), **(row.attributes or {})},
        added_at=added_at,
    )
    for order in orders:
        profile_rules.record_order(profile, order.at, order.amount, None)
    return profile


def _orders(connection: Connection, ids: list[str]) -> dict[str, list[OrderRecord]]:
    if not ids:
        return {}
    query = (
        select(PaidOrder.customer_id, PaidOrder.paid_at, PaidOrder.amount)
        .where(PaidOrder.customer_id.in_(ids))
        .order_by(PaidOrder.customer_id, PaidOrder.paid_at)
    )
    found: dict[str, list[OrderRecord]] = {}
    for customer_id, paid_at, amount in connection.execute(query):
        found.setdefault(customer_id, []).append(OrderRecord(at=paid_at, amount=amount))
    return found


def _added(connection: Connection, ids: list[str]) -> dict[str, datetime]:
    if not ids:
        return {}
    query = select(Acquisition.customer_id, Acquisition.added_at).where(
        Acquisition.customer_id.in_(ids)
    )
    return {customer: added_at for customer, added_at in connection.execute(query)}


def in_playbook(database: Database, customers: list[str], playbook: str) -> set[str]:
    """The customers whose profile shows an active journey in the playbook."""
    if not customers:
        return set()
    query = select(PROFILES.c.customer_id, PROFILES.c.journeys).where(
        PROFILES.c.customer_id.in_(customers)
    )
    with database.engine.connect() as connection:
        return {c for c, journeys in connection.execute(query) if playbook in (journeys or {})}


def profile_count(database: Database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(PROFILES)).scalar_one()
