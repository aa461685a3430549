"""The next tier review is remembered by the exact moments it reads: whatever changes in
place (an interaction, an order, the same instant in another zone), it is the moment a
scan of every window finds, in that moment's zone."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sopflow.core import profile as rules
from sopflow.core.clock import shift
from sopflow.core.state import OrderRecord, Profile
from sopflow.language.plan import ProfilePlan, TierLevelPlan, TierRulePlan, TiersPlan

T0 = datetime(2026, 11, 23, 1, tzinfo=UTC)
EAST = timezone(timedelta(hours=8))
DAY = 86_400

TIERS = TiersPlan(
    period_seconds=90 * DAY,
    value=(
        TierLevelPlan(
            name="core", rule=TierRulePlan(min_orders=2, ordered_within_seconds=30 * DAY)
        ),
        TierLevelPlan(name="general", rule=TierRulePlan(active_within_seconds=30 * DAY)),
        TierLevelPlan(name="ordinary"),
    ),
    lifecycle=(
        # Two windows of the same length: equal closings, the first found wins.
        TierLevelPlan(name="churn", rule=TierRulePlan(inactive_for_seconds=60 * DAY)),
        TierLevelPlan(name="dormancy", rule=TierRulePlan(inactive_for_seconds=60 * DAY)),
        TierLevelPlan(name="growth"),
    ),
)
PLAN = ProfilePlan(version="v", tiers=TIERS)


def scanned(profile: Profile, after: datetime) -> datetime | None:
    """What the windows give when every one is looked at in turn (the definition)."""
    anchors = (
        profile.last_interaction_at,
        profile.last_interaction_at or profile.added_at,
        profile.last_order_at,
    )
    best = None
    for anchor, seconds in rules._windows(TIERS):
        moment = anchors[anchor]
        if moment is not None:
            candidate = shift(moment, seconds)
            if candidate > after and (best is None or candidate < best):
                best = candidate
    for order in profile.recent_orders:
        candidate = shift(order.at, TIERS.period_seconds + 1)
        if candidate > after and (best is None or candidate < best):
            best = candidate
    return best


def same(a: datetime | None, b: datetime | None) -> bool:
    return a == b and (a is None or (a.tzinfo, a.isoformat()) == (b.tzinfo, b.isoformat()))  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    rules._CLOSINGS.clear()


def test_a_profile_changed_in_place_gets_the_review_a_scan_finds() -> None:
    chance = random.Random(18)
    profile = Profile(added_at=T0)
    for step in range(400):
        moment = T0 + timedelta(hours=chance.randrange(0, 24 * 200))
        zone = chance.choice([UTC, EAST])
        match chance.randrange(4):
            case 0:
                profile.last_interaction_at = moment.astimezone(zone)
            case 1:
                profile.last_order_at = moment.astimezone(zone)
                profile.recent_orders = [
                    *profile.recent_orders[-3:],
                    OrderRecord(at=moment, amount=1),
                ]
            case 2:
                profile.recent_orders = []
            case 3:
                pass  # only the moment asked after moves
        after = T0 + timedelta(hours=chance.randrange(0, 24 * 300))
        found = rules.next_review(profile, PLAN, after)
        assert same(found, scanned(profile, after)), step


def test_the_same_instant_in_another_zone_is_not_the_same_input() -> None:
    profile = Profile(last_interaction_at=T0)
    assert rules.next_review(profile, PLAN, T0).tzinfo is UTC  # type: ignore[union-attr]
    profile.last_interaction_at = T0.astimezone(EAST)
    assert rules.next_review(profile, PLAN, T0).tzinfo is EAST  # type: ignore[union-attr]


def test_of_closings_at_one_instant_the_first_window_found_gives_the_zone() -> None:
    # `core` (ordered within 30 days) comes before `general` (active within 30 days).
    for interaction in (T0.astimezone(EAST), T0):
        profile = Profile(last_order_at=T0, last_interaction_at=interaction)
        found = rules.next_review(profile, PLAN, T0)
        assert same(found, scanned(profile, T0))
        assert found is not None and found.tzinfo is UTC
    profile = Profile(last_order_at=T0.astimezone(EAST), last_interaction_at=T0)
    assert rules.next_review(profile, PLAN, T0).tzinfo is EAST  # type: ignore[union-attr]
