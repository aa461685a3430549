"""Profile rules: what an event teaches about a customer (tags, orders, tiers, lifecycle)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sopflow.core.state import RECENT_ORDERS_LIMIT, CustomerEvent, OrderRecord, Profile
from sopflow.language.guards import evaluate_guard
from sopflow.language.plan import ProfilePlan, TierLevelPlan, TierRulePlan
from sopflow.language.templates import TemplateError, render_template


def apply_tag(profile: Profile, tag: str, rules: ProfilePlan | None) -> list[str]:
    """Add a tag; a single-valued group loses its other value. Returns the tags removed."""
    group = tag.partition(":")[0]
    removed: list[str] = []
    spec = rules.groups.get(group) if rules else None
    if spec is not None and not spec.multi:
        removed = [t for t in profile.tags if t.partition(":")[0] == group and t != tag]
    profile.tags = sorted({*(t for t in profile.tags if t not in removed), tag})
    return removed


def remove_tag(profile: Profile, tag: str) -> bool:
    if tag not in profile.tags:
        return False
    profile.tags = [t for t in profile.tags if t != tag]
    return True


def event_tags(
    event: CustomerEvent,
    rules: ProfilePlan | None,
    context: dict[str, Any],
    guard: Callable[[str, dict[str, Any]], bool] = evaluate_guard,
) -> tuple[list[str], list[str]]:
    """Tags the taxonomy's event-driven rules derive from this event: (valid, rejected)."""
    valid, rejected = [], []
    for rule in rules.tag_rules if rules else ():
        if rule.event != event.type:
            continue
        if rule.when and not guard(rule.when, context):
            continue
        try:
            value = render_template(rule.tag, context).strip()
        except TemplateError:
            value = ""
        allowed = rules.groups[rule.group].values if rules else ()
        tag = f"{rule.group}:{value}"
        if not value or (allowed and value not in allowed):
            rejected.append(tag)
        else:
            valid.append(tag)
    return valid, rejected


def record_order(profile: Profile, at: datetime, amount: float, period_seconds: int | None) -> None:
    """An order paid: counts, spend, recency, average interval and the predicted next one."""
    profile.order_count += 1
    profile.total_spent += amount
    profile.first_order_at = profile.first_order_at or at
    profile.last_order_at = max(profile.last_order_at or at, at)
    profile.recent_orders.append(OrderRecord(at=at, amount=amount))
    if period_seconds:
        horizon = at - timedelta(seconds=period_seconds)
        profile.recent_orders = [o for o in profile.recent_orders if o.at >= horizon]
    profile.recent_orders = profile.recent_orders[-RECENT_ORDERS_LIMIT:]
    if profile.order_count > 1:
        span = (profile.last_order_at - profile.first_order_at).total_seconds() / 86400
        profile.average_interval_days = span / (profile.order_count - 1)
        profile.predicted_next_purchase_at = profile.last_order_at + timedelta(
            days=profile.average_interval_days
        )


def _period_orders(profile: Profile, now: datetime, period_seconds: int) -> list[OrderRecord]:
    horizon = now - timedelta(seconds=period_seconds)
    return [o for o in profile.recent_orders if horizon <= o.at <= now]


def _matches(rule: TierRulePlan, profile: Profile, now: datetime, period_seconds: int) -> bool:
    orders = _period_orders(profile, now, period_seconds)
    since_interaction = now - (profile.last_interaction_at or profile.added_at or now)
    checks = [
        rule.min_orders is None or len(orders) >= rule.min_orders,
        rule.min_spent is None or sum(o.amount for o in orders) >= rule.min_spent,
        rule.min_lifetime_orders is None or profile.order_count >= rule.min_lifetime_orders,
        rule.ordered_within_seconds is None
        or (
            profile.last_order_at is not None
            and now - profile.last_order_at <= timedelta(seconds=rule.ordered_within_seconds)
        ),
        rule.active_within_seconds is None
        or (
            profile.last_interaction_at is not None
            and since_interaction <= timedelta(seconds=rule.active_within_seconds)
        ),
        rule.inactive_for_seconds is None
        or since_interaction >= timedelta(seconds=rule.inactive_for_seconds),
    ]
    return all(checks)


def level_of(
    levels: tuple[TierLevelPlan, ...], profile: Profile, now: datetime, period_seconds: int
) -> str | None:
    for level in levels:
        if level.rule is None or _matches(level.rule, profile, now, period_seconds):
            return level.name
    return None


def next_review(profile: Profile, rules: ProfilePlan | None, after: datetime) -> datetime | None:
    """The next moment a tier or lifecycle could change with no event: a window closing."""
    if rules is None or rules.tiers is None:
        return None
    tiers = rules.tiers
    candidates: list[datetime] = []
    anchors = {
        "active_within_seconds": profile.last_interaction_at,
        "inactive_for_seconds": profile.last_interaction_at or profile.added_at,
        "ordered_within_seconds": profile.last_order_at,
    }
    for level in (*tiers.value, *tiers.lifecycle):
        if level.rule is None:
            continue
        for field, anchor in anchors.items():
            seconds = getattr(level.rule, field)
            if seconds is not None and anchor is not None:
                # A hair past the boundary, so "within" and "for" tip over at that moment.
                extra = 1 if field != "inactive_for_seconds" else 0
                candidates.append(anchor + timedelta(seconds=seconds + extra))
    candidates += [
        o.at + timedelta(seconds=tiers.period_seconds + 1) for o in profile.recent_orders
    ]
    upcoming = [c for c in candidates if c > after]
    return min(upcoming) if upcoming else None
