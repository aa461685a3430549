"""Moments posts in the read model: one row per post a staff member was asked to publish,
with its state (the API's moments list per staff member).

A post is a WeCom moments task (`add_moment_task`), created once per batch by the sender
workflow's activity; WeCom answers with a job, the job with a moment id, and the moment
with whether the staff member published it. States: `awaiting_publication`, `published`,
`overdue` (not published by its deadline: the staff member got a reminder task),
`expired` (never published), `failed`, `cancelled`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import JSON, Column, String, Table, Text, select, update

from sopflow.store.database import Database
from sopflow.store.inserts import insert_ignoring_duplicates
from sopflow.store.tables import Base, UtcDateTime

WHEN = UtcDateTime()  # aware datetimes in and out, SQLite too
MOMENTS = Table(
    "moment_posts",
    Base.metadata,
    Column("batch_id", String(200), primary_key=True),
    Column("sender", String(100), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("visible_to", JSON),
    Column("jobid", String(100)),
    Column("moment_id", String(100)),
    Column("status", String(30), nullable=False),
    Column("detail", Text),
    Column("created_at", WHEN, nullable=False),
    Column("published_at", WHEN),
    Column("reminded_at", WHEN),
)
# The sender workflow's outcome -> the post's state.
STATE_OF_OUTCOME = {
    "awaiting_confirmation": "awaiting_publication",
    "sent": "published",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
FINAL = ("published", "failed", "expired", "cancelled")
MAX_ROWS = 500


@dataclass(frozen=True)
class MomentRow:
    batch_id: str
    sender: str
    text: str
    jobid: str | None
    moment_id: str | None
    status: str


class MomentPost(BaseModel):
    batch_id: str
    sender: str
    text: str
    visible_to: list[str] | None
    status: str
    detail: str | None
    moment_id: str | None
    created_at: datetime
    published_at: datetime | None
    reminded_at: datetime | None


class Moments:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record(
        self,
        batch_id: str,
        sender: str,
        text: str,
        visible_to: list[str] | None,
        jobid: str,
        detail: str | None,
        now: datetime,
    ) -> None:
        """The post WeCom accepted (a job id) or refused (none, with the reason)."""
        row = {
            "batch_id": batch_id,
            "sender": sender,
            "text": text,
            "visible_to": visible_to,
            "jobid": jobid or None,
            "status": "awaiting_publication" if jobid else "failed",
            "detail": detail,
            "created_at": now,
        }
        with self.database.engine.begin() as connection:
            insert_ignoring_duplicates(connection, MOMENTS, [row])

    def get(self, batch_id: str) -> MomentRow | None:
        query = select(MOMENTS).where(MOMENTS.c.batch_id == batch_id)
        with self.database.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return MomentRow(row.batch_id, row.sender, row.text, row.jobid, row.moment_id, row.status)

    def set_moment_id(self, batch_id: str, moment_id: str, detail: str | None) -> None:
        with self.database.engine.begin() as connection:
            connection.execute(
                update(MOMENTS)
                .where(MOMENTS.c.batch_id == batch_id)
                .values(moment_id=moment_id, detail=detail)
            )

    def set_state(
        self, batch_id: str, status: str, detail: str | None, at: datetime | None = None
    ) -> None:
        """A post's new state; a final state is never left (a late report changes nothing)."""
        values: dict[str, object] = {"status": status}
        if detail is not None:
            values["detail"] = detail
        if status == "published":
            values["published_at"] = at
        if status == "overdue":
            values["reminded_at"] = at
        with self.database.engine.begin() as connection:
            connection.execute(
                update(MOMENTS)
                .where(MOMENTS.c.batch_id == batch_id, MOMENTS.c.status.not_in(FINAL))
                .values(values)
            )

    def posts(
        self, sender: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[MomentPost]:
        query = select(MOMENTS).order_by(MOMENTS.c.created_at.desc())
        if sender is not None:
            query = query.where(MOMENTS.c.sender == sender)
        if status is not None:
            query = query.where(MOMENTS.c.status == status)
        query = query.limit(min(limit, MAX_ROWS))
        with self.database.engine.connect() as connection:
            return [
                MomentPost(
                    batch_id=r.batch_id,
                    sender=r.sender,
                    text=r.text,
                    visible_to=r.visible_to,
                    status=r.status,
                    detail=r.detail,
                    moment_id=r.moment_id,
                    created_at=r.created_at,
                    published_at=r.published_at,
                    reminded_at=r.reminded_at,
                )
                for r in connection.execute(query)
            ]
