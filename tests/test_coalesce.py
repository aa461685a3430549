"""Group commit on the event path (issue 18, item 3): requests that arrive together share
one ledger round trip; each still gets its own answer, and a failure stays its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from api.coalesce import Coalescer
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, authenticate_all, create_key, revoke_key
from tests import test_end_to_end
from tests.helpers import eventually, plan_store, read_deliveries
from tests.test_api_hardening import ECHO
from tests.test_end_to_end import Running

running = test_end_to_end.running  # the API-and-worker fixture


async def test_callers_waiting_while_a_call_runs_share_the_next_call() -> None:
    calls: list[list[int]] = []
    release = threading.Event()

    def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(timeout=30)  # the first call is in flight while the rest arrive
        return [item * 10 for item in items]

    double = Coalescer(run)
    first = asyncio.create_task(double(0))
    await eventually(lambda: _now(calls))
    rest = [asyncio.create_task(double(n)) for n in range(1, 10)]
    await eventually(lambda: _now(len(double._pending) == 9))
    release.set()
    assert await asyncio.gather(first, *rest) == [n * 10 for n in range(10)]
    assert calls == [[0], list(range(1, 10))]


async def test_a_failing_item_fails_only_its_own_caller() -> None:
    calls: list[list[str]] = []
    release = threading.Event()

    def run(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(timeout=30)
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    upper = Coalescer(run)
    first = asyncio.create_task(upper("first"))
    await eventually(lambda: _now(calls))
    rest = [asyncio.create_task(upper(item)) for item in ("a", "bad", "b")]
    await eventually(lambda: _now(len(upper._pending) == 3))
    release.set()
    assert await first == "FIRST"
    assert await rest[0] == "A" and await rest[2] == "B"
    with pytest.raises(ValueError, match="bad item"):
        await rest[1]
    # Shared first, then each alone.
    assert calls == [["first"], ["a", "bad", "b"], ["a"], ["bad"], ["b"]]


async def _now(value: object) -> object:
    return value


async def test_concurrent_single_events_each_get_their_own_answer(
    running: Running, make_plan
) -> None:
    """Forty one-event requests at once, to twenty customers: a repeat of a key acts no
    more than once, a key reused for another event is refused (409) alone, and every
    customer gets exactly one answer to its key."""
    plan_store(running.settings).deploy(make_plan(ECHO))
    http = running.http
    customers = [f"coal-{n}" for n in range(20)]
    enrol = [{"customer_id": c, "type": "contact.added"} for c in customers]
    assert (await http.post("/v1/events:batch", json={"events": enrol})).status_code == 202

    def ping(customer: str, n: int) -> dict[str, object]:
        key = f"{customer}-k"
        return {"customer_id": customer, "type": "ping", "idempotency_key": key, "data": {"n": n}}

    requests = [ping(c, i) for i, c in enumerate(customers)]
    requests += [ping(c, i) for i, c in enumerate(customers[:10])]  # the same events again
    requests += [ping(c, 99) for c in customers[10:]]  # their keys, for other events
    replies = await asyncio.gather(*(http.post("/v1/events", json=r) for r in requests))
    assert all(r.status_code == 202 for r in replies[:10] + replies[20:30])
    # Of two events under one key, whichever the ledger claimed first is accepted.
    for one, other in zip(replies[10:20], replies[30:], strict=True):
        assert sorted([one.status_code, other.status_code]) == [202, 409]
        refused = one if one.status_code == 409 else other
        assert refused.json()["error"]["code"] == "idempotency_key_reused"

    async def pongs() -> list[str] | None:
        texts = [d["text"] for d in read_deliveries(running.settings)]
        found = [t for t in texts if t.startswith("pong")]
        return found if len(found) >= 20 else None

    assert len(await eventually(pongs, timeout=120)) == 20  # one per customer


def test_tokens_arriving_together_are_each_judged_on_their_own(tmp_path: Path) -> None:
    database = Database.from_settings(Settings(home=tmp_path / "home"))
    good, principal = create_key(database, Role.INGEST, "good")
    revoked, gone = create_key(database, Role.OPERATOR, "revoked")
    revoke_key(database, gone.key_id)
    forged = good[:-4] + "abcd"
    tokens = [good, revoked, forged, "not-a-key", good]
    assert authenticate_all(database, tokens) == [principal, None, None, None, principal]
