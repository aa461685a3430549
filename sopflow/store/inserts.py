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
    # The rows go as parameters of one statement per set of columns, never as literals in
    # it: the statement is then the same on every call and SQLAlchemy compiles it once (a
    # multi-row VALUES was compiled again on every call, about a millisecond each on the
    # event path), and the driver sends the rows in batches ("insertmanyvalues").
    # RETURNING counts the rows really inserted, on PostgreSQL and SQLite alike (a batched
    # insert's rowcount is -1 on some drivers).
    statement = insert(table).on_conflict_do_nothing().returning(key)
    inserted = 0
    for group in _by_columns(rows):
        inserted += len(session.execute(statement, group).all())
    return inserted


def _by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they name, in order (an executemany takes one column
    set; a column a row leaves out takes its default, as in a multi-row VALUES)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())
