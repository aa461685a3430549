"""From accepted requests to customer workflows: check, deduplicate, signal, record.

The routes of api/routes/events.py translate HTTP to a call here and back. Every event of
a request is checked before any is sent (a 422 or a 409 sends nothing); each customer's
events reach its workflow in order, in signals of bounded size; a key seen before answers
as a duplicate and is not sent again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from temporalio.client import Client

from api.coalesce import Coalescer, shared
from api.errors import ApiError
from api.event_limits import check_data, check_occurred_at
from api.models import ErrorDetail, EventIn
from sopflow.core.deployment import Deployment
from sopflow.core.state import CustomerEvent
from sopflow.language.diagnostics import nearest
from sopflow.language.events import STANDARD_EVENT_TYPES, declared_event_types
from sopflow.settings import Settings
from sopflow.store.acquisitions import record_events
from sopflow.store.database import Database
from sopflow.store.event_keys import KnownKey, Pair, claim, mark_sent, payload_hash
from sopflow.store.plans import PlanStore
from workflows.client import send_events

# Signals to different customers go out together, a bounded number at a time.
CONCURRENT_SIGNALS = 50


@dataclass(frozen=True)
class Accepted:
    event: CustomerEvent
    duplicate: bool


async def ingest(
    requests: list[EventIn],
    *,
    batch: bool,
    temporal: Client,
    plans: PlanStore,
    settings: Settings,
    database: Database,
) -> list[Accepted]:
    """Check every event, refuse reused keys, send the new ones, answer for each."""
    deployment = plans.deployment()
    now = datetime.now(UTC)
    prefixes = [f"events.{i}." if batch else "" for i in range(len(requests))]
    problems = [
        d
        for request, prefix in zip(requests, prefixes, strict=True)
        for d in _check(request, prefix, deployment, plans, settings, now)
    ]
    if problems:
        summary = "; ".join(f"{d.field}: {d.message}" for d in problems[:10])
        raise ApiError(422, "invalid_request", summary, problems)
    events = [_event(request, now) for request in requests]
    duplicates = await _deduplicate(requests, events, prefixes, database)
    fresh = [e for e, duplicate in zip(events, duplicates, strict=True) if not duplicate]
    await _signal(fresh, deployment, temporal, settings)
    keyed = {(r.customer_id, r.idempotency_key) for r in requests if r.idempotency_key}
    sent = [(e.customer_id, e.idempotency_key) for e in fresh]
    marked = [pair for pair in sent if pair in keyed]
    # Every accepted event writes its customer's audience profile row (and reports rows
    # for new fans and orders): nothing to skip once an event went out.
    if marked or fresh:
        await _ledger(database).sent(Sent(marked, fresh, settings.reporting_timezone))
    return [Accepted(e, d) for e, d in zip(events, duplicates, strict=True)]


def _check(
    request: EventIn,
    prefix: str,
    deployment: Deployment,
    plans: PlanStore,
    settings: Settings,
    now: datetime,
) -> list[ErrorDetail]:
    latest = now + timedelta(seconds=settings.max_event_skew_seconds)
    problems = check_occurred_at(
        request.occurred_at, settings.earliest_event_time, latest, settings.max_event_skew_seconds
    )
    known = allowed_types(plans, deployment.model_dump_json())
    if request.type not in known:
        close = nearest(request.type, known)
        hint = f", did you mean '{close}'?" if close else ""
        problems.append(
            ErrorDetail(
                field="type",
                message=f"unknown event type '{request.type}'{hint}; use a standard type "
                "(GET /v1/event-types) or one a deployed playbook declares",
                limit="a standard type or one a deployed playbook declares",
                nearest=close,
            )
        )
    problems += check_data(request.type, request.data)
    return [d.model_copy(update={"field": f"{prefix}{d.field}"}) for d in problems]


def _event(request: EventIn, now: datetime) -> CustomerEvent:
    return CustomerEvent(
        customer_id=request.customer_id,
        type=request.type,
        occurred_at=request.occurred_at or now,
        data=request.data,
        idempotency_key=request.idempotency_key or uuid.uuid4().hex,
    )


async def _deduplicate(
    requests: list[EventIn], events: list[CustomerEvent], prefixes: list[str], database: Database
) -> list[bool]:
    """Which events are repeats (of an earlier request, or earlier in this one); a key that
    names a different event than before is refused (409) with both payload hashes."""
    hashes: dict[Pair, str] = {}
    first_at: dict[Pair, int] = {}
    digests: list[str | None] = []
    for index, (request, event) in enumerate(zip(requests, events, strict=True)):
        if request.idempotency_key is None:
            digests.append(None)  # a key of our own: never repeated
            continue
        digest = payload_hash(request.type, request.occurred_at, request.data)
        digests.append(digest)
        pair = (event.customer_id, event.idempotency_key)
        hashes.setdefault(pair, digest)
        first_at.setdefault(pair, index)
    known = await _ledger(database).claim(hashes) if hashes else {}
    conflicts: list[ErrorDetail] = []
    duplicates: list[bool] = []
    for index, (event, given) in enumerate(zip(events, digests, strict=True)):
        if given is None:
            duplicates.append(False)
            continue
        digest = given
        pair = (event.customer_id, event.idempotency_key)
        recorded = known.get(pair)
        first = recorded.payload_hash if recorded else hashes[pair]
        if first != digest or hashes[pair] != digest:
            earlier = first if first != digest else hashes[pair]
            conflicts.append(
                ErrorDetail(
                    field=f"{prefixes[index]}idempotency_key",
                    message=f"'{event.idempotency_key}' of customer '{event.customer_id}' "
                    f"named another event: payload sha256 {earlier} first, sha256 {digest} "
                    "now; use a new key for a new event",
                )
            )
            duplicates.append(False)
            continue
        repeated_here = first_at[pair] != index
        duplicates.append(repeated_here or bool(recorded and recorded.sent))
    if conflicts:
        summary = "; ".join(f"{d.field}: {d.message}" for d in conflicts[:3])
        raise ApiError(409, "idempotency_key_reused", summary, conflicts)
    return duplicates


async def _signal(
    events: list[CustomerEvent], deployment: Deployment, temporal: Client, settings: Settings
) -> None:
    by_customer: dict[str, list[CustomerEvent]] = defaultdict(list)
    for event in events:
        by_customer[event.customer_id].append(event)
    gate = asyncio.Semaphore(CONCURRENT_SIGNALS)

    async def send(customer_events: list[CustomerEvent]) -> None:
        # A customer's events act in the order they happened, whatever order they came in
        # (stable: events of the same instant keep the order given).
        ordered = sorted(customer_events, key=lambda e: e.occurred_at)
        async with gate:
            await send_events(temporal, settings, ordered, deployment)

    await asyncio.gather(*(send(e) for e in by_customer.values()))


@dataclass(frozen=True)
class Sent:
    """What a request records once its events reached their workflows."""

    keys: list[Pair]  # its own keys (not generated ones): repeats are duplicates now
    events: list[CustomerEvent]  # acquisitions and orders for the reports
    zone: str


@dataclass(frozen=True)
class _EventLedger:
    """The event-key ledger's writes, each shared by the requests waiting at once."""

    claim: Coalescer[dict[Pair, str], dict[Pair, KnownKey]]
    sent: Coalescer[Sent, None]


def _ledger(database: Database) -> _EventLedger:
    return shared(database, "event-ledger", _new_ledger)


def _new_ledger(database: Callable[[], Database]) -> _EventLedger:
    def claim_all(requests: Sequence[dict[Pair, str]]) -> list[dict[Pair, KnownKey]]:
        merged: dict[Pair, str] = {}
        for keys in requests:
            for pair, digest in keys.items():
                merged.setdefault(pair, digest)  # the first request's payload is claimed
        known = claim(database(), merged)
        return [{p: known[p] for p in keys if p in known} for keys in requests]

    def record_all(requests: Sequence[Sent]) -> list[None]:
        mark_sent(database(), [pair for sent in requests for pair in sent.keys])
        for zone in sorted({sent.zone for sent in requests}):
            events = [e for sent in requests if sent.zone == zone for e in sent.events]
            record_events(database(), events, zone)
        return [None] * len(requests)

    return _EventLedger(claim=Coalescer(claim_all), sent=Coalescer(record_all))


def allowed_types(plans: PlanStore, deployment_json: str) -> set[str]:
    return set(STANDARD_EVENT_TYPES) | _declared(plans, deployment_json)


@lru_cache(maxsize=64)
def _declared(plans: PlanStore, deployment_json: str) -> frozenset[str]:
    # Keyed by the deployment itself: a new deployment is a new key, never a stale answer.
    deployment = Deployment.model_validate_json(deployment_json)
    loaded = [plans.load(v) for v in deployment.playbooks.values()]
    profile = plans.load_profile(deployment.profile) if deployment.profile else None
    return frozenset(declared_event_types([p for p in loaded if p], profile))
