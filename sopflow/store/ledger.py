"""Idempotent writes of the worker: deliveries, staff tasks and the journey ledger.

Every row is keyed by an identity the workflow derived deterministically, so a retried
activity, a replayed workflow or a duplicate request writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from sopflow.core.deliveries import FINAL
from sopflow.core.state import Delivery, TimelineEntry
from sopflow.reports.funnel import FUNNEL_KINDS, LedgerRow
from sopflow.store.database import Database
from sopflow.store.groups import is_group, project_group
from sopflow.store.inserts import insert_ignoring_duplicates
from sopflow.store.tables import DeliveryRecord, JourneyEvent, TaskRecord

# A delivery's state after the hand-over only moves on (sopflow.core.deliveries): a late
# or repeated report (the sender workflow's report retried) never takes a final state back.
FINAL_STATUSES = FINAL
# What the metrics call a status of null: delivered when handed over (log, webhook, tasks).
HANDED_OVER = "delivered"

# The name the other stores import it by (it lived here first).
_insert_ignoring_duplicates = insert_ignoring_duplicates

TASK_STATUS_OF_KIND = {
    "task_completed": "completed",
    "task_escalated": "escalated",
    "task_postponed": "open",
}


class Ledger:
    def __init__(self, database: Database) -> None:
        self.database = database

    def delivered(self, idempotency_key: str) -> bool:
        """Has this effect already reached its channel?"""
        return idempotency_key in self.delivered_keys([idempotency_key])

    def delivered_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these effects already reached their channel (one keyed query, without
        the ORM's identity map: it runs before every delivery)."""
        if not keys:
            return set()
        table = DeliveryRecord.__table__
        query = select(table.c.idempotency_key).where(table.c.idempotency_key.in_(list(keys)))
        with self.database.engine.connect() as connection:
            return {row[0] for row in connection.execute(query)}

    def set_delivery_status(self, idempotency_key: str, status: str, detail: str | None) -> bool:
        """A handed-over delivery's later state (a WeCom send confirmed, failed, expired);
        False when the row has a final state already (or is not there)."""
        column = DeliveryRecord.status
        moving = or_(column.is_(None), column.not_in(FINAL_STATUSES))
        if status not in FINAL_STATUSES:
            moving = or_(column.is_(None), column == status)
        with self.database.engine.begin() as connection:
            result = connection.execute(
                update(DeliveryRecord)
                .where(DeliveryRecord.idempotency_key == idempotency_key, moving)
                .values(status=status, detail=detail)
            )
        return bool(result.rowcount)

    def status_counts(self, playbook: str | None = None) -> dict[str, dict[str, int]]:
        """Deliveries per channel and state (`delivered` for those whose hand-over ended
        them): what the delivery ledger knows, one grouped query."""
        column = func.coalesce(DeliveryRecord.status, HANDED_OVER)
        query = select(DeliveryRecord.channel, column, func.count()).group_by(
            DeliveryRecord.channel, column
        )
        if playbook is not None:
            query = query.where(DeliveryRecord.playbook == playbook)
        counts: dict[str, dict[str, int]] = {}
        with self.database.engine.connect() as connection:
            for channel, status, count in connection.execute(query):
                counts.setdefault(channel, {})[status] = count
        return counts

    def record_delivery(
        self, delivery: Delivery, detail: str | None, status: str | None = None
    ) -> bool:
        """Record a delivered effect (and a task's inbox row); False if it was already there."""
        now = datetime.now(UTC)
        # Core, not the ORM: two keyed inserts per delivery, on the hot path.
        with self.database.engine.begin() as session:
            new = _insert_ignoring_duplicates(
                session,
                DeliveryRecord.__table__,
                [
                    {
                        "idempotency_key": delivery.idempotency_key,
                        "kind": delivery.kind,
                        "customer_id": delivery.customer_id,
                        "playbook": delivery.playbook,
                        "journey_id": delivery.journey_id,
                        "stage": delivery.stage,
                        "channel": delivery.channel,
                        "text": delivery.text,
                        "scheduled_at": delivery.scheduled_at,
                        "delivered_at": now,
                        "detail": detail,
                        "status": status,
                    }
                ],
            )
            if delivery.kind == "task":
                _insert_ignoring_duplicates(
                    session,
                    TaskRecord.__table__,
                    [
                        {
                            "task_id": delivery.idempotency_key,
                            "customer_id": delivery.customer_id,
                            "playbook": delivery.playbook,
                            "journey_id": delivery.journey_id,
                            "stage": delivery.stage,
                            "title": delivery.text,
                            "script": delivery.script,
                            "assignee": delivery.assignee or "unassigned",
                            "status": "open",
                            "created_at": delivery.scheduled_at,
                            "due_at": delivery.due_at,
                            "completed_at": None,
                            "escalated_at": None,
                        }
                    ],
                )
        return new > 0

    def record_timeline(self, customer_id: str, entries: Sequence[TimelineEntry]) -> int:
        """Append timeline entries to the journey ledger; task entries move task rows."""
        rows = [
            {
                "customer_id": customer_id,
                "seq": e.seq,
                "at": e.at,
                "kind": e.kind,
                "playbook": e.playbook,
                "stage": e.stage,
                "channel": e.channel,
                "text": e.text,
                "idempotency_key": e.idempotency_key,
                # The ledger has no column for an entry's error: it travels in the detail.
                "detail": {**e.detail, "error": e.error} if e.error else e.detail,
            }
            for e in entries
        ]
        with self.database.session() as session, session.begin():
            new = _insert_ignoring_duplicates(session, JourneyEvent.__table__, rows)
            for entry in entries:
                self._move_task(session, entry)
            if is_group(customer_id):
                # A group's owner, tags and members, in the same transaction.
                project_group(session, customer_id, entries)
        return new

    @staticmethod
    def _move_task(session: Session, entry: TimelineEntry) -> None:
        status = TASK_STATUS_OF_KIND.get(entry.kind)
        task_id = entry.detail.get("task_id")
        if status is None or not isinstance(task_id, str):
            return
        values: dict[str, Any] = {"status": status}
        if entry.kind == "task_completed":
            values["completed_at"] = entry.at
        elif entry.kind == "task_escalated":
            values["escalated_at"] = entry.at
        elif isinstance(entry.detail.get("due_at"), str):
            values["due_at"] = datetime.fromisoformat(entry.detail["due_at"])
        session.execute(update(TaskRecord).where(TaskRecord.task_id == task_id).values(values))

    def funnel_rows(self, playbook: str) -> list[LedgerRow]:
        """The journey-ledger rows a playbook's funnel is computed from."""
        query = select(
            JourneyEvent.customer_id,
            JourneyEvent.seq,
            JourneyEvent.at,
            JourneyEvent.kind,
            JourneyEvent.playbook,
            JourneyEvent.stage,
            JourneyEvent.channel,
        ).where(JourneyEvent.playbook == playbook, JourneyEvent.kind.in_(FUNNEL_KINDS))
        with self.database.session() as session:
            return [LedgerRow(*row) for row in session.execute(query)]

    def quarantined(self, recent: int) -> tuple[int, list[JourneyEvent]]:
        """How many inputs were quarantined (all customers), and the latest ones."""
        kind = JourneyEvent.kind == "quarantined"
        with self.database.session() as session:
            total = session.scalar(select(func.count()).select_from(JourneyEvent).where(kind))
            latest = session.scalars(
                select(JourneyEvent).where(kind).order_by(JourneyEvent.at.desc()).limit(recent)
            )
            return total or 0, list(latest)

    def tasks_of(self, assignee: str) -> list[TaskRecord]:
        with self.database.session() as session:
            query = select(TaskRecord).where(TaskRecord.assignee == assignee)
            return list(session.scalars(query.order_by(TaskRecord.due_at)))
