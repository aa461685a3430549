"""Durable idempotency keys: every key a client gave, per customer, for as long as the
read model lives, with the hash of the event it named.

A customer's workflow remembers only its last 1,000 keys (a window that keeps its state
small); this table has no window, so a repeat answers the same however late it comes,
and a key reused for a different event is refused with both hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_, update

from sopflow.store.database import Database
from sopflow.store.ledger import _insert_ignoring_duplicates
from sopflow.store.tables import EventKey

Pair = tuple[str, str]  # (customer_id, idempotency_key)


@dataclass(frozen=True)
class KnownKey:
    """A key as the read model holds it: the event it first named, and whether that event
    reached the customer's workflow."""

    payload_hash: str
    sent: bool


def payload_hash(event_type: str, occurred_at: datetime | None, data: dict[str, Any]) -> str:
    """SHA-256 of what the client sent (type, occurred_at as given, data), canonical JSON:
    the same event hashes the same whatever its key order or time zone notation."""
    when = occurred_at.astimezone(UTC).isoformat() if occurred_at else None
    canonical = json.dumps(
        {"type": event_type, "occurred_at": when, "data": data},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(database: Database, keys: dict[Pair, str]) -> dict[Pair, KnownKey]:
    """Record each key (with its payload hash) not seen before, as not yet sent; return
    every key's row as it stands now: this request's own, or the one recorded first."""
    if not keys:
        return {}
    now = datetime.now(UTC)
    rows = [
        {
            "customer_id": customer,
            "idempotency_key": key,
            "payload_hash": digest,
            "accepted_at": now,
            "sent": False,
        }
        for (customer, key), digest in keys.items()
    ]
    table = EventKey.__table__
    query = select(
        table.c.customer_id, table.c.idempotency_key, table.c.payload_hash, table.c.sent
    ).where(tuple_(table.c.customer_id, table.c.idempotency_key).in_(list(keys)))
    with database.engine.begin() as connection:
        _insert_ignoring_duplicates(connection, table, rows)
        found = connection.execute(query).all()
    return {(c, k): KnownKey(payload_hash=h, sent=bool(s)) for c, k, h, s in found}


def mark_sent(database: Database, pairs: Sequence[Pair]) -> None:
    """These events reached their workflows: a repeat of their keys is a duplicate now."""
    if not pairs:
        return
    statement = (
        update(EventKey)
        .where(tuple_(EventKey.customer_id, EventKey.idempotency_key).in_(list(pairs)))
        .values(sent=True)
    )
    with database.engine.begin() as connection:
        connection.execute(statement)
