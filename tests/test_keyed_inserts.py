"""Keyed inserts (sopflow/store/inserts.py) on SQLite and PostgreSQL: duplicates skipped and
counted, rows naming different columns, and one compiled statement for every call."""

from datetime import UTC, datetime

from sqlalchemy import event, select
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import CacheStats, ExecutionContext

from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.inserts import insert_ignoring_duplicates
from sopflow.store.tables import JourneyEvent

TABLE = JourneyEvent.__table__


def row(seq: int, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "customer_id": "c1",
        "seq": seq,
        "at": datetime(2026, 12, 3, tzinfo=UTC),
        "kind": "entered",
        "playbook": "p",
        "stage": "s",
    }
    return base | extra


def test_duplicates_are_skipped_and_counted(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    with database.session() as session, session.begin():
        assert insert_ignoring_duplicates(session, TABLE, [row(1), row(2)]) == 2
    with database.session() as session, session.begin():
        # one new, one already there, one repeated within the call
        assert insert_ignoring_duplicates(session, TABLE, [row(2), row(3), row(3)]) == 1
        assert insert_ignoring_duplicates(session, TABLE, []) == 0
    with database.session() as session:
        seqs = session.scalars(select(JourneyEvent.seq).order_by(JourneyEvent.seq))
        assert list(seqs) == [1, 2, 3]
    database.dispose()


def test_rows_naming_different_columns_each_keep_their_own(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    with database.session() as session, session.begin():
        rows = [row(1), row(2, channel="log", detail={"n": 2}), row(3)]
        assert insert_ignoring_duplicates(session, TABLE, rows) == 3
    with database.session() as session:
        found = session.execute(
            select(JourneyEvent.seq, JourneyEvent.channel, JourneyEvent.detail)
        ).all()
        # a column a row leaves out takes its default, as in one multi-row VALUES
        assert sorted(found) == [(1, None, {}), (2, "log", {"n": 2}), (3, None, {})]
    database.dispose()


def test_the_statement_is_compiled_once_whatever_the_number_of_rows(
    database_settings: Settings,
) -> None:
    # A multi-row VALUES with the rows inlined was compiled again on every call (its cache
    # key holds the row count); as parameters, later calls reuse the compiled statement.
    database = Database.from_settings(database_settings)
    hits: list[bool] = []

    def seen(
        conn: Connection,
        cursor: object,
        statement: str,
        params: object,
        context: ExecutionContext,
        executemany: bool,
    ) -> None:
        if "journey_events" in statement and statement.lstrip().upper().startswith("INSERT"):
            hits.append(context.cache_hit == CacheStats.CACHE_HIT)  # type: ignore[attr-defined]

    event.listen(database.engine, "before_cursor_execute", seen)
    for call, size in enumerate([1, 3, 1, 2, 5]):
        with database.session() as session, session.begin():
            rows = [row(call * 10 + n) for n in range(size)]
            assert insert_ignoring_duplicates(session, TABLE, rows) == size
    # compiled twice (one row, several rows: an execute and an executemany), then reused
    assert hits == [False, False, True, True, True]
    database.dispose()
