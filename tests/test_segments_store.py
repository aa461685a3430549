"""Customer profiles projected for audiences, and audiences evaluated page by page, on
SQLite and on PostgreSQL: each ledger entry applied once and in order however often it
is written, event attributes kept apart from `set` ones, orders and journeys read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from sopflow.core.state import CustomerEvent, TimelineEntry
from sopflow.language.segments import SegmentPlan
from sopflow.settings import Settings
from sopflow.store.acquisitions import record_events
from sopflow.store.database import Database
from sopflow.store.ledger import Ledger
from sopflow.store.segments import (
    PROFILES,
    in_playbook,
    load_segment,
    preview_segment,
    rebuild_profiles,
    save_segments,
    segment_page,
)

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def entry(
    seq: int, kind: str, playbook: str | None = None, stage: str | None = None, **detail: object
) -> TimelineEntry:
    return TimelineEntry(
        at=T0 + timedelta(minutes=seq),
        kind=kind,
        seq=seq,
        playbook=playbook,
        stage=stage,
        detail=detail,
    )


def event(customer: str, type_: str, key: str, **data: object) -> CustomerEvent:
    return CustomerEvent(
        customer_id=customer, type=type_, occurred_at=T0, data=data, idempotency_key=key
    )


def members(database: Database, when: str) -> list[str]:
    return preview_segment(database, SegmentPlan(name="s", when=when), 100).sample


def test_profiles_are_projected_once_in_order_and_audiences_read_them(
    database_settings: Settings,
) -> None:
    database = Database.from_settings(database_settings)
    ledger = Ledger(database)
    first = [
        entry(1, "tag_added", tag="skin_type:dry"),
        entry(2, "enrolled", "welcome", "icebreak", version="v"),
        entry(3, "stage_entered", "welcome", "icebreak"),
        entry(4, "tier_changed", **{"from": None, "to": "vip"}),
        entry(5, "attribute_set", "welcome", "icebreak", scope="customer", city="杭州"),
    ]
    later = [
        entry(6, "tag_removed", tag="skin_type:dry"),
        entry(7, "stage_entered", "welcome", "engaged"),
        entry(8, "enrolled", "member_day", "invited", version="w", variant="coupon"),
        entry(9, "journey_ended", "welcome", "engaged", reason="done"),
    ]
    ledger.record_timeline("c1", first)
    ledger.record_timeline("c1", later)
    ledger.record_timeline("c1", first)  # a retried write of old entries changes nothing
    ledger.record_timeline("group/wr1", [entry(1, "tag_added", tag="g:x")])  # not a customer
    record_events(
        database,
        [
            event("c2", "profile.updated", "a", attributes={"city": "上海", "vip": True}),
            event("c1", "profile.updated", "b", attributes={"city": "北京", "size": "m"}),
            event("c3", "contact.added", "c", channel_code="qr"),
            event("c3", "order.paid", "d", amount=59),
        ],
        "Asia/Shanghai",
    )
    assert members(database, "'skin_type:dry' in customer.tags") == []
    assert members(database, "customer.tier == 'vip'") == ["c1"]
    # A `set` attribute wins over the one an event brought; the others are merged.
    assert members(database, "customer.attributes.city == '杭州'") == ["c1"]
    assert members(database, "has(customer.attributes.size)") == ["c1"]
    assert members(database, "has(customer.attributes.vip)") == ["c2"]
    assert members(database, "'welcome' in journeys") == []
    assert members(database, "journeys.member_day == 'invited'") == ["c1"]
    assert members(database, "customer.orders.count == 1 && customer.days_since_added >= 0") == [
        "c3"
    ]
    assert in_playbook(database, ["c1", "c2", "c3"], "member_day") == {"c1"}

    # Pages follow the customers' ids; the last page says there is no next.
    segment = SegmentPlan(name="all", when="true")
    pages, after = [], None
    while True:
        page = segment_page(database, segment, after, limit=2)
        pages.append(page.customer_ids)
        if page.next_after is None:
            break
        after = page.next_after
    assert pages == [["c1", "c2"], ["c3"]]

    # A read model whose profiles are gone (or never were) gets them back from the ledger.
    with database.engine.begin() as connection:
        connection.execute(delete(PROFILES))
    assert rebuild_profiles(database, customers_per_transaction=1) == 2  # c1 and the group
    assert members(database, "journeys.member_day == 'invited' && customer.tier == 'vip'") == ["c1"]
    database.dispose()


def test_audiences_are_saved_by_name_and_replaced(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    save_segments(database, [SegmentPlan(name="a", title="A", when="true")], "me")
    save_segments(database, [SegmentPlan(name="a", title="A2", when="false")], "you")
    assert load_segment(database, "a") == SegmentPlan(name="a", title="A2", when="false")
    assert load_segment(database, "b") is None
    database.dispose()
