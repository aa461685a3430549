"""Keyed inserts: the one way the read model writes a row that a retry may repeat."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_duplicates(
    session: Session | Connection, table: Any, rows: list[dict[str, Any]]
) -> int:
    """Insert rows; rows whose key exists are skipped. Returns how many were new."""
    if not rows:
        return 0
    bind = session.get_bind() if isinstance(session, Session) else session
    dialect = bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key = next(iter(table.primary_key.columns))
    # RETURNING counts the rows really inserted, on PostgreSQL and SQLite alike (a batched
    # insert's rowcount is -1 on some drivers).
    statement = insert(table).values(rows).on_conflict_do_nothing().returning(key)
    return len(session.execute(statement).all())
