"""The corp tag library's ids for the taxonomy's tags (`group:value`), written by
`sopflow wecom sync-tags` and read by the `wecom.tag` channel, which needs WeCom's tag id
for `mark_tag`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, String, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sopflow.store.database import Database
from sopflow.store.tables import Base, UtcDateTime

CORP_TAGS = Table(
    "wecom_corp_tags",
    Base.metadata,
    Column("tag", String(128), primary_key=True),  # group:value
    Column("group_id", String(100), nullable=False),
    Column("tag_id", String(100), nullable=False, index=True),
    # Stored as UTC like every time in the read model (SQLite keeps no offset).
    Column("synced_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class CorpTagId:
    tag: str  # group:value
    group_id: str
    tag_id: str


class CorpTags:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, mapping: Iterable[CorpTagId]) -> None:
        """Keep these ids (a tag WeCom recreated under a new id replaces the old one)."""
        rows = [
            {
                "tag": m.tag,
                "group_id": m.group_id,
                "tag_id": m.tag_id,
                "synced_at": datetime.now(UTC),
            }
            for m in mapping
        ]
        if not rows:
            return
        with self.database.engine.begin() as connection:
            insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
            statement = insert(CORP_TAGS).values(rows)
            statement = statement.on_conflict_do_update(
                index_elements=["tag"],
                set_={
                    "group_id": statement.excluded.group_id,
                    "tag_id": statement.excluded.tag_id,
                    "synced_at": statement.excluded.synced_at,
                },
            )
            connection.execute(statement)

    def ids(self, tags: Iterable[str]) -> dict[str, str]:
        """WeCom's tag id of each of these tags that sync-tags recorded."""
        wanted = list(tags)
        if not wanted:
            return {}
        query = select(CORP_TAGS.c.tag, CORP_TAGS.c.tag_id).where(CORP_TAGS.c.tag.in_(wanted))
        with self.database.engine.connect() as connection:
            return {tag: tag_id for tag, tag_id in connection.execute(query)}

    def all(self) -> list[CorpTagId]:
        query = select(CORP_TAGS.c.tag, CORP_TAGS.c.group_id, CORP_TAGS.c.tag_id)
        with self.database.engine.connect() as connection:
            rows = connection.execute(query.order_by(CORP_TAGS.c.tag)).all()
        return [CorpTagId(tag, group_id, tag_id) for tag, group_id, tag_id in rows]
