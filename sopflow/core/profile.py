"""Profile rules: what an event teaches about a customer (tags, orders, tiers, lifecycle)."""

from __future__ import annotations

import json
import weakref
from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sopflow.core.clock import shift
from sopflow.core.state import (
    ATTRIBUTE_KEY_MAX_CHARS,
    ATTRIBUTE_VALUE_MAX_BYTES,
    ATTRIBUTES_LIMIT,
    ATTRIBUTES_MAX_BYTES,
    RECENT_ORDERS_LIMIT,
    TAG_MAX_CHARS,
    TAGS_LIMIT,
    CustomerEvent,
    OrderRecord,
    Profile,
)
from sopflow.language.guards import evaluate_guard
from sopflow.language.plan import ProfilePlan, TierLevelPlan, TierRulePlan, TiersPlan
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


def tag_refusal(profile: Profile, tag: str) -> str | None:
    """Why the customer cannot take this tag (too long, too many already), or None."""
    if len(tag) > TAG_MAX_CHARS:
        return f"a tag of {len(tag)} characters: at most {TAG_MAX_CHARS}"
    if tag not in profile.tags and len(profile.tags) >= TAGS_LIMIT:
        return f"the customer has {len(profile.tags)} tags already: at most {TAGS_LIMIT}"
    return None


def set_attributes(target: dict[str, Any], updates: dict[str, Any]) -> list[tuple[str, str]]:
    """Write `updates` into a customer's (or a journey's) attributes, within the bounds of
    one value, the number of keys and their total size. Returns (key, reason) for each
    value refused; the others are written."""
    # Sizes as compact JSON: `"key":value,` per entry, inside braces.
    sizes = {key: _json_size(key) + _json_size(value) + 2 for key, value in target.items()}
    total = 2 + sum(sizes.values())
    refused: list[tuple[str, str]] = []
    for key, value in updates.items():
        name = str(key)
        size = _json_size(value)
        if len(name) > ATTRIBUTE_KEY_MAX_CHARS:
            refused.append(
                (
                    name[:ATTRIBUTE_KEY_MAX_CHARS] + "…",
                    f"a name of {len(name)} characters: at most {ATTRIBUTE_KEY_MAX_CHARS}",
                )
            )
            continue
        if size > ATTRIBUTE_VALUE_MAX_BYTES:
            refused.append((name, f"a value of {size} bytes: at most {ATTRIBUTE_VALUE_MAX_BYTES}"))
            continue
        if name not in target and len(target) >= ATTRIBUTES_LIMIT:
            refused.append((name, f"{len(target)} attributes already: at most {ATTRIBUTES_LIMIT}"))
            continue
        entry = _json_size(name) + size + 2
        after = total - sizes.get(name, 0) + entry
        if after > ATTRIBUTES_MAX_BYTES:
            refused.append(
                (name, f"the attributes would take {after} bytes: at most {ATTRIBUTES_MAX_BYTES}")
            )
            continue
        target[name] = value
        sizes[name] = entry
        total = after
    return refused


def _json_size(value: Any) -> int:
    """Bytes of a value as JSON (how it travels in every Temporal payload)."""
    if value.__class__ in _SIZED and (value.__class__ is not str or len(value) <= 256):
        # Every attribute is measured again at every set; short texts and whole numbers
        # are remembered (by type too: true and 1 are equal, not of one size).
        key = (value.__class__, value)
        size = _SIZES.get(key)
        if size is None:
            if len(_SIZES) >= SIZES_KEPT:
                _SIZES.clear()
            size = _SIZES[key] = _measured(value)
        return size
    return _measured(value)


SIZES_KEPT = 4096
_SIZED = frozenset({str, int, bool})
_SIZES: dict[tuple[type, Any], int] = {}


def _measured(value: Any) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError, RecursionError):
        return ATTRIBUTE_VALUE_MAX_BYTES + 1  # cannot be measured: refused


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
        horizon = shift(at, -period_seconds)
        profile.recent_orders = [o for o in profile.recent_orders if o.at >= horizon]
    profile.recent_orders = profile.recent_orders[-RECENT_ORDERS_LIMIT:]
    if profile.order_count > 1:
        span = (profile.last_order_at - profile.first_order_at).total_seconds() / 86400
        profile.average_interval_days = span / (profile.order_count - 1)
        profile.predicted_next_purchase_at = shift(
            profile.last_order_at, days=profile.average_interval_days
        )


def _period_orders(profile: Profile, now: datetime, period_seconds: int) -> list[OrderRecord]:
    horizon = shift(now, -period_seconds)
    return [o for o in profile.recent_orders if horizon <= o.at <= now]


def _matches(
    rule: TierRulePlan,
    profile: Profile,
    now: datetime,
    period_seconds: int,
    orders: Callable[[], list[OrderRecord]],
) -> bool:
    """Every condition of the rule holds (checked in order, the first that fails decides)."""
    if rule.min_orders is not None and len(orders()) < rule.min_orders:
        return False
    if rule.min_spent is not None and sum(o.amount for o in orders()) < rule.min_spent:
        return False
    if rule.min_lifetime_orders is not None and profile.order_count < rule.min_lifetime_orders:
        return False
    if rule.ordered_within_seconds is not None and (
        profile.last_order_at is None
        or (now - profile.last_order_at).total_seconds() > rule.ordered_within_seconds
    ):
        return False
    if rule.active_within_seconds is None and rule.inactive_for_seconds is None:
        return True  # most rules: no time since an interaction to compute
    since_interaction = now - (profile.last_interaction_at or profile.added_at or now)
    if rule.active_within_seconds is not None and (
        profile.last_interaction_at is None
        or since_interaction.total_seconds() > rule.active_within_seconds
    ):
        return False
    return (
        rule.inactive_for_seconds is None
        or since_interaction.total_seconds() >= rule.inactive_for_seconds
    )


def level_of(
    levels: tuple[TierLevelPlan, ...], profile: Profile, now: datetime, period_seconds: int
) -> str | None:
    period: list[list[OrderRecord]] = []

    def orders() -> list[OrderRecord]:  # the period's orders, computed once if at all
        if not period:
            period.append(_period_orders(profile, now, period_seconds))
        return period[0]

    for level in levels:
        if level.rule is None or _matches(level.rule, profile, now, period_seconds, orders):
            return level.name
    return None


# The windows of a tiers plan that close with no event, as (anchor, seconds to add):
# computed once per live plan object, as next_review is asked after every step.
_ACTIVE, _INACTIVE, _ORDERED = range(3)
_WINDOWS: dict[int, tuple[tuple[int, int], ...]] = {}


def _windows(tiers: TiersPlan) -> tuple[tuple[int, int], ...]:
    found = _WINDOWS.get(id(tiers))
    if found is None:
        windows = []
        for level in (*tiers.value, *tiers.lifecycle):
            rule = level.rule
            if rule is None:
                continue
            # A hair past the boundary, so "within" and "for" tip over at that moment.
            for anchor, seconds, extra in (
                (_ACTIVE, rule.active_within_seconds, 1),
                (_INACTIVE, rule.inactive_for_seconds, 0),
                (_ORDERED, rule.ordered_within_seconds, 1),
            ):
                if seconds is not None:
                    windows.append((anchor, seconds + extra))
        found = _WINDOWS[id(tiers)] = tuple(windows)
        weakref.finalize(tiers, _WINDOWS.pop, id(tiers), None)
    return found


def next_review(profile: Profile, rules: ProfilePlan | None, after: datetime) -> datetime | None:
    """The next moment a tier or lifecycle could change with no event: a window closing."""
    if rules is None or rules.tiers is None:
        return None
    tiers = rules.tiers
    anchors = (
        profile.last_interaction_at,
        profile.last_interaction_at or profile.added_at,
        profile.last_order_at,
    )
    orders = profile.recent_orders
    # The closings are remembered by the exact moments they come from (the core asks
    # after every event and timer, and these rarely changed); only `after` moves.
    key = (id(tiers), *map(_exact, anchors), *(_exact(order.at) for order in orders))
    known = _CLOSINGS.get(key)
    if known is None or known[0] is not tiers:
        if len(_CLOSINGS) >= CLOSINGS_KEPT:
            _CLOSINGS.clear()  # cheaper than tracking age; refilled within a few steps
        known = _CLOSINGS[key] = (tiers, _closings(tiers, anchors, orders))
    closings = known[1]
    index = bisect_right(closings, after)
    return closings[index] if index < len(closings) else None


# Sorted closings of a tiers plan's windows, by the plan and the exact moments they read.
CLOSINGS_KEPT = 8192
_CLOSINGS: dict[tuple[Any, ...], tuple[TiersPlan, list[datetime]]] = {}


def _exact(moment: datetime | None) -> tuple[Any, ...]:
    """A moment as a key that tells apart the same instant in two time zones (a closing
    keeps the zone of the moment it is counted from)."""
    return (None,) if moment is None else (moment, moment.tzinfo, moment.fold)


def _closings(
    tiers: TiersPlan, anchors: tuple[datetime | None, ...], orders: list[OrderRecord]
) -> list[datetime]:
    """Every moment a window closes, earliest first; of equal instants, the first found
    first (windows, then orders), so that the one returned is the one a scan finds."""
    found = [
        shift(moment, seconds)
        for anchor, seconds in _windows(tiers)
        if (moment := anchors[anchor]) is not None
    ]
    found += [shift(order.at, tiers.period_seconds + 1) for order in orders]
    return sorted(found)  # stable: equal instants keep their order
