"""Staff tasks in the read model: inboxes with keyset pages, completion, statistics, and
which customers a staff member serves."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import and_, case, exists, func, or_, select, update

from sopflow.errors import SopflowError
from sopflow.store.database import Database
from sopflow.store.tables import TaskRecord

TaskStatus = Literal["open", "overdue", "completed", "escalated"]


class InvalidCursor(SopflowError):
    """A cursor this API did not hand out (or one that was altered)."""


@dataclass(frozen=True)
class Cursor:
    """Where a page of an inbox ends: its last task's due time (None: no due time, those
    come last) and id."""

    due_at: datetime | None
    task_id: str

    def encode(self) -> str:
        key = [self.due_at.isoformat() if self.due_at else "", self.task_id]
        return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor, or InvalidCursor for anything `encode` cannot have written."""
        try:
            key = json.loads(base64.urlsafe_b64decode(text.encode()))
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise InvalidCursor("not a cursor from this API") from e
        if not (
            isinstance(key, list)
            and len(key) == 2
            and all(isinstance(part, str) for part in key)
            and key[1]
        ):
            raise InvalidCursor("not a cursor from this API")
        due, task_id = key
        if not due:
            return cls(None, task_id)
        try:
            moment = datetime.fromisoformat(due)
        except ValueError as e:
            raise InvalidCursor("not a cursor from this API") from e
        if moment.tzinfo is None:
            raise InvalidCursor("not a cursor from this API (a time without a zone)")
        return cls(moment, task_id)


@dataclass(frozen=True)
class StaffStats:
    assignee: str
    total: int
    completed: int
    open: int
    overdue: int
    escalated: int


def list_tasks(
    database: Database,
    assignee: str | None,
    status: TaskStatus | None,
    limit: int,
    cursor: Cursor | None,
    now: datetime,
) -> tuple[list[TaskRecord], Cursor | None]:
    """A page of tasks, soonest due first (tasks without a due time last), and the cursor
    of the next page (None on the last)."""
    query = select(TaskRecord)
    if assignee is not None:
        query = query.where(TaskRecord.assignee == assignee)
    if status == "overdue":
        query = query.where(TaskRecord.status == "open", TaskRecord.due_at < now)
    elif status is not None:
        query = query.where(TaskRecord.status == status)
    if cursor is not None:
        query = query.where(_after(cursor))
    query = query.order_by(
        TaskRecord.due_at.is_(None), TaskRecord.due_at, TaskRecord.task_id
    ).limit(limit + 1)
    with database.session() as session:
        rows = list(session.scalars(query))
    page = rows[:limit]
    following = Cursor(page[-1].due_at, page[-1].task_id) if len(rows) > limit else None
    return page, following


def _after(cursor: Cursor):  # type: ignore[no-untyped-def]
    """Tasks after the cursor in the order (due time, nulls last; then id)."""
    if cursor.due_at is None:
        return and_(TaskRecord.due_at.is_(None), TaskRecord.task_id > cursor.task_id)
    return or_(
        TaskRecord.due_at > cursor.due_at,
        and_(TaskRecord.due_at == cursor.due_at, TaskRecord.task_id > cursor.task_id),
        TaskRecord.due_at.is_(None),
    )


def get_task(database: Database, task_id: str) -> TaskRecord | None:
    with database.session() as session:
        return session.get(TaskRecord, task_id)


def mark_completed(database: Database, task_id: str, at: datetime) -> None:
    """The inbox answers at once; the journey ledger confirms with the event's own time."""
    with database.session() as session, session.begin():
        session.execute(
            update(TaskRecord)
            .where(TaskRecord.task_id == task_id)
            .values(status="completed", completed_at=at)
        )


def staff_stats(database: Database, assignee: str | None, now: datetime) -> list[StaffStats]:
    """Per assignee (or one): total, completed, open, overdue and escalated tasks."""
    counts = (
        select(
            TaskRecord.assignee,
            func.count(),
            func.sum(case((TaskRecord.status == "completed", 1), else_=0)),
            func.sum(case((TaskRecord.status == "open", 1), else_=0)),
            func.sum(
                case((and_(TaskRecord.status == "open", TaskRecord.due_at < now), 1), else_=0)
            ),
            func.sum(case((TaskRecord.status == "escalated", 1), else_=0)),
        )
        .group_by(TaskRecord.assignee)
        .order_by(TaskRecord.assignee)
    )
    if assignee is not None:
        counts = counts.where(TaskRecord.assignee == assignee)
    with database.session() as session:
        rows = list(session.execute(counts).all())
    return [
        StaffStats(a, t, int(c or 0), int(o or 0), int(d or 0), int(e or 0))
        for a, t, c, o, d, e in rows
    ]


def has_served(database: Database, staff_id: str, customer_id: str) -> bool:
    """Was a task for this customer ever assigned to this staff member (an escalation
    included)?"""
    query = select(
        exists().where(TaskRecord.customer_id == customer_id, TaskRecord.assignee == staff_id)
    )
    with database.session() as session:
        return bool(session.scalar(query))
