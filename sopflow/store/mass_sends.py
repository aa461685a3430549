"""WeCom mass sends in the read model: what makes creating a task idempotent, and the
per-customer counts behind the corp's mass-message limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, String, Table, Text, func, select, update

from sopflow.store.database import Database
from sopflow.store.ledger import _insert_ignoring_duplicates
from sopflow.store.tables import Base, UtcDateTime

# Stored as UTC whatever zone a caller's time is in: the per-customer limit compares
# against the start of a day in the reporting zone.
WHEN = UtcDateTime()

MASS_SENDS = Table(
    "wecom_mass_sends",
    Base.metadata,
    Column("batch_id", String(200), primary_key=True),
    Column("sender", String(100), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("msgid", String(100)),
    # When sopflow first tried to create the task, and when WeCom's answer was recorded.
    Column("started_at", WHEN, nullable=False),
    Column("created_at", WHEN),
    # single (customers), group (group chats) or moment (msgid is the moment's job id).
    Column("chat_type", String(10), nullable=False, default="single"),
)
RECIPIENTS = Table(
    "wecom_mass_recipients",
    Base.metadata,
    Column("batch_id", String(200), primary_key=True),
    Column("customer_id", String(128), primary_key=True, index=True),
    Column("status", String(30), nullable=False),
    Column("detail", Text),
    Column("queued_at", WHEN, nullable=False),
)
# Mass messages that count against the corp's per-customer limit: those WeCom may still
# send or has sent.
COUNTED = ("awaiting_confirmation", "sent")


@dataclass(frozen=True)
class MassSendRow:
    batch_id: str
    sender: str
    text: str
    msgid: str | None
    started_at: datetime


class MassSends:
    def __init__(self, database: Database) -> None:
        self.database = database

    def begin(
        self, batch_id: str, sender: str, text: str, now: datetime, chat_type: str = "single"
    ) -> MassSendRow:
        """The batch's row, written before WeCom is called: a retry that finds it with no
        msgid knows an earlier attempt may have created the task."""
        new = {
            "batch_id": batch_id,
            "sender": sender,
            "text": text,
            "started_at": now,
            "chat_type": chat_type,
        }
        with self.database.engine.begin() as connection:
            _insert_ignoring_duplicates(connection, MASS_SENDS, [new])
            row = connection.execute(
                select(MASS_SENDS).where(MASS_SENDS.c.batch_id == batch_id)
            ).one()
        return MassSendRow(row.batch_id, row.sender, row.text, row.msgid, row.started_at)

    def record_task(
        self,
        batch_id: str,
        msgid: str,
        customers: Sequence[str],
        refused: dict[str, str],
        now: datetime,
    ) -> None:
        """WeCom's answer: the task (msgid, empty when none was created), the customers
        it targets and those it or the limit refused, with the reason."""
        rows = [
            {"customer_id": c, "status": "awaiting_confirmation", "detail": None} for c in customers
        ] + [{"customer_id": c, "status": "failed", "detail": why} for c, why in refused.items()]
        with self.database.engine.begin() as connection:
            connection.execute(
                update(MASS_SENDS)
                .where(MASS_SENDS.c.batch_id == batch_id)
                .values(msgid=msgid, created_at=now)
            )
            _insert_ignoring_duplicates(
                connection,
                RECIPIENTS,
                [{"batch_id": batch_id, "queued_at": now, **row} for row in rows],
            )

    def known_msgids(self, msgids: Sequence[str]) -> set[str]:
        """Which of these WeCom tasks are recorded for a batch."""
        if not msgids:
            return set()
        query = select(MASS_SENDS.c.msgid).where(MASS_SENDS.c.msgid.in_(list(msgids)))
        with self.database.engine.connect() as connection:
            return {row[0] for row in connection.execute(query)}

    def refused(self, batch_id: str) -> dict[str, str]:
        """The customers a recorded task did not target, with the reason."""
        query = select(RECIPIENTS.c.customer_id, RECIPIENTS.c.detail).where(
            RECIPIENTS.c.batch_id == batch_id, RECIPIENTS.c.status == "failed"
        )
        with self.database.engine.connect() as connection:
            return {row[0]: row[1] or "" for row in connection.execute(query)}

    def set_status(self, batch_id: str, customer_ids: Sequence[str], status: str) -> None:
        if not customer_ids:
            return
        with self.database.engine.begin() as connection:
            connection.execute(
                update(RECIPIENTS)
                .where(RECIPIENTS.c.batch_id == batch_id)
                .where(RECIPIENTS.c.customer_id.in_(list(customer_ids)))
                .values(status=status)
            )

    def counts_since(self, customer_ids: Sequence[str], since: datetime) -> dict[str, int]:
        """Mass messages each customer has had (or may still get) since `since`."""
        if not customer_ids:
            return {}
        query = (
            select(RECIPIENTS.c.customer_id, func.count())
            .where(RECIPIENTS.c.customer_id.in_(list(customer_ids)))
            .where(RECIPIENTS.c.queued_at >= since)
            .where(RECIPIENTS.c.status.in_(COUNTED))
            .group_by(RECIPIENTS.c.customer_id)
        )
        with self.database.engine.connect() as connection:
            return {row[0]: int(row[1]) for row in connection.execute(query)}
