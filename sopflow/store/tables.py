"""Tables of the read model. Every write is keyed so that a retry cannot double it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out, stored as UTC (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: sopflow stores only aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: UtcDateTime(),
    }


class DeliveryRecord(Base):
    """The delivery ledger: one row per effect that reached its channel, by idempotency key."""

    __tablename__ = "deliveries"

    idempotency_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    playbook: Mapped[str] = mapped_column(String(100))
    journey_id: Mapped[str] = mapped_column(String(120))
    stage: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(40), index=True)
    text: Mapped[str] = mapped_column(Text)
    scheduled_at: Mapped[datetime]
    delivered_at: Mapped[datetime]
    detail: Mapped[str | None] = mapped_column(Text)
    # Null: delivered when handed over (log, webhook, tasks). WeCom mass sends go from
    # awaiting_confirmation to sent, failed, cancelled or expired as WeCom reports.
    status: Mapped[str | None] = mapped_column(String(30))


class TaskRecord(Base):
    """A staff task, in the inbox of its assignee until completed."""

    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    playbook: Mapped[str] = mapped_column(String(100))
    journey_id: Mapped[str] = mapped_column(String(120))
    stage: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(Text)
    script: Mapped[str | None] = mapped_column(Text)
    assignee: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_tasks_inbox", "assignee", "status", "due_at"),)


POSITIONS = "kind IN ('enrolled', 'stage_entered', 'migrated', 'journey_ended')"
MESSAGES = "kind = 'message'"
# Built here: inside JourneyEvent, `text` is a column.
_POSITIONS_WHERE = text(POSITIONS)
_MESSAGES_WHERE = text(MESSAGES)


class JourneyEvent(Base):
    """The journey ledger: the customer's timeline, entry by entry, for metrics and audits."""

    __tablename__ = "journey_events"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    playbook: Mapped[str | None] = mapped_column(String(100))
    stage: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(40))
    text: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_journey_events_funnel", "playbook", "kind", "stage"),
        # The console's overview (migration 0004): where journeys stand, and messages.
        Index(
            "ix_journey_events_positions",
            "playbook",
            "customer_id",
            "seq",
            "kind",
            "stage",
            sqlite_where=_POSITIONS_WHERE,
            postgresql_where=_POSITIONS_WHERE,
        ),
        Index(
            "ix_journey_events_messages",
            "playbook",
            "at",
            "channel",
            "idempotency_key",
            sqlite_where=_MESSAGES_WHERE,
            postgresql_where=_MESSAGES_WHERE,
        ),
    )


class ApiKey(Base):
    """An API key: `sf_<key_id>_<secret>`; only the secret's SHA-256 is stored."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    staff_id: Mapped[str | None] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Acquisition(Base):
    """A new fan: the customer's first contact.added, with its channel QR code."""

    __tablename__ = "acquisitions"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel_code: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[datetime]
    period: Mapped[str] = mapped_column(String(7), index=True)


class PaidOrder(Base):
    """A paid order, keyed per customer: two customers' `order-1` are two orders."""

    __tablename__ = "orders"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    amount: Mapped[float]
    paid_at: Mapped[datetime]


class EventKey(Base):
    """An idempotency key a client gave, per customer, with the hash of the event it named.

    `sent` turns true once the event reached the customer's workflow: a repeat of a sent
    key is answered as a duplicate and not sent again; a repeat of an unsent one (the
    first request failed midway) is sent.
    """

    __tablename__ = "event_keys"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    payload_hash: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime]
    sent: Mapped[bool] = mapped_column(Boolean, default=False)


class CostInput(Base):
    """What a period cost: fixed costs (channel '*') and traffic cost per channel."""

    __tablename__ = "cost_inputs"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    channel_code: Mapped[str] = mapped_column(String(100), primary_key=True)
    fixed_cost: Mapped[float]
    traffic_cost: Mapped[float]


class StoredPlan(Base):
    """A compiled plan (kind `playbook`) or profile rules (kind `profile`), by version.

    Versions are content hashes: a row never changes once written.
    """

    __tablename__ = "plans"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(100), index=True)
    body: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime]


class StoredDeployment(Base):
    """Deployment number `id`: what new journeys start on from then, and who made it.

    Rows are only ever inserted, numbered one after the other; the highest is current.
    """

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The deployment the deployer saw; not id - 1 when a concurrent deploy came between.
    based_on: Mapped[int | None] = mapped_column(Integer)
    deployed_at: Mapped[datetime]
    deployed_by: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))
    merged: Mapped[bool] = mapped_column(Boolean)
    playbooks: Mapped[dict[str, Any]] = mapped_column(JSON)
    profile: Mapped[str | None] = mapped_column(String(64))
    deployed: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed: Mapped[list[str]] = mapped_column(JSON)
    profile_changed: Mapped[bool] = mapped_column(Boolean)
