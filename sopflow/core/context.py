"""The values of the names guards and templates read.

The names, their types and meanings are declared once in `sopflow.language.context`; this
module computes their values from the state. tests/test_guard_context.py checks that the
two agree name for name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sopflow.core.clock import zone
from sopflow.core.state import CustomerEvent, GroupInfo, JourneyState, Profile
from sopflow.language.context import SUBJECT_ROOT, LazyMap
from sopflow.language.subjects import Audience, audience_of, bare_id


def customer_view(
    customer_id: str,
    profile: Profile,
    now: datetime,
    tz_name: str,
    period_seconds: int | None = None,
) -> dict[str, Any]:
    period_orders = profile.recent_orders
    if period_seconds:
        period_orders = [
            o for o in profile.recent_orders if (now - o.at).total_seconds() <= period_seconds
        ]
    inactive_since = profile.last_interaction_at or profile.added_at
    return {
        "id": customer_id,
        "tags": list(profile.tags),
        "tier": profile.tier or "",
        "lifecycle": profile.lifecycle or "",
        "attributes": dict(profile.attributes),
        "scores": dict(profile.scores),
        "timezone": tz_name,
        "added_at": profile.added_at,
        "last_interaction_at": profile.last_interaction_at,
        "days_since_added": (now - profile.added_at).days if profile.added_at else 0,
        "days_inactive": (now - inactive_since).days if inactive_since else 0,
        "orders": {
            "count": profile.order_count,
            "total_spent": profile.total_spent,
            "first_at": profile.first_order_at,
            "last_at": profile.last_order_at,
            "average_interval_days": profile.average_interval_days or 0.0,
            "predicted_next_at": profile.predicted_next_purchase_at,
            "period_count": len(period_orders),
            "period_spent": sum(o.amount for o in period_orders),
        },
        "groups": list(profile.groups),
    }


# Each field of `group` once, as a function of (subject id, profile, group, now, time
# zone): the whole view for templates, one field at a time for guards (`LazyMap`), which
# read a count or two after every step of a group's journey.
_GROUP: dict[str, Callable[[str, Profile, GroupInfo, datetime, str], Any]] = {
    "id": lambda subject, p, g, now, tz: bare_id(subject),
    "name": lambda subject, p, g, now, tz: g.name or "",
    "owner": lambda subject, p, g, now, tz: g.owner or "",
    "tags": lambda subject, p, g, now, tz: list(p.tags),
    "attributes": lambda subject, p, g, now, tz: dict(p.attributes),
    "timezone": lambda subject, p, g, now, tz: tz,
    "member_count": lambda subject, p, g, now, tz: len(g.members),
    "customer_count": lambda subject, p, g, now, tz: sum(
        1 for m in g.members.values() if m.customer
    ),
    "members": lambda subject, p, g, now, tz: list(g.members),
    "created_at": lambda subject, p, g, now, tz: p.added_at,
    "days_since_created": lambda subject, p, g, now, tz: (
        (now - p.added_at).days if p.added_at else 0
    ),
    "last_joined_at": lambda subject, p, g, now, tz: g.last_joined_at,
}


def group_view(
    subject_id: str, profile: Profile, group: GroupInfo | None, now: datetime, tz_name: str
) -> dict[str, Any]:
    info = group or GroupInfo()
    return {name: value(subject_id, profile, info, now, tz_name) for name, value in _GROUP.items()}


def staff_view(subject_id: str, profile: Profile, tz_name: str) -> dict[str, Any]:
    return {
        "id": bare_id(subject_id),
        "tags": list(profile.tags),
        "attributes": dict(profile.attributes),
        "timezone": tz_name,
    }


def subject_view(
    subject_id: str,
    profile: Profile,
    now: datetime,
    tz_name: str,
    period_seconds: int | None = None,
    group: GroupInfo | None = None,
) -> tuple[str, dict[str, Any]]:
    """The subject's own root (`customer`, `group` or `staff`) and its value."""
    match audience_of(subject_id):
        case Audience.GROUP:
            return "group", group_view(subject_id, profile, group, now, tz_name)
        case Audience.STAFF:
            return "staff", staff_view(subject_id, profile, tz_name)
    return "customer", customer_view(subject_id, profile, now, tz_name, period_seconds)


def journey_view(
    journey: JourneyState,
    now: datetime,
    profile: Profile,
    interaction_events: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    # Inactivity as this playbook counts it (its `interaction_events`, else the
    # catalogue's), and never before the journey started.
    last = profile.last_interaction(interaction_events)
    return {
        "playbook": journey.playbook,
        "stage": journey.stage,
        "entered_at": journey.entered_stage_at,
        "enrolled_at": journey.enrolled_at,
        "attributes": dict(journey.attributes),
        "counters": dict(journey.counters),
        "days_in_stage": (now - journey.entered_stage_at).days,
        "last_interaction_at": last,
        "days_inactive": (now - max(last or journey.enrolled_at, journey.enrolled_at)).days,
        "variant": journey.variant or "",
    }


def event_view(event: CustomerEvent) -> dict[str, Any]:
    return {"type": event.type, "data": dict(event.data), "occurred_at": event.occurred_at}


def countdown_view(remaining: str, deadline: datetime | None) -> dict[str, Any]:
    return {"remaining": remaining, "deadline": deadline}


def build_context(
    customer_id: str,
    profile: Profile,
    journey: JourneyState | None,
    event: CustomerEvent | None,
    now: datetime,
    tz_name: str,
    extra: dict[str, Any] | None = None,
    period_seconds: int | None = None,
    interaction_events: tuple[str, ...] | None = None,
    group: GroupInfo | None = None,
    journeys: dict[str, str] | None = None,
    roots: frozenset[str] | None = None,
) -> dict[str, Any]:
    """`journeys`: the stage of each active journey, by playbook. `roots`: only these
    names (a template reads no others); None: all."""
    tz = zone(tz_name)  # first, so that an unknown zone fails whatever is read
    context: dict[str, Any] = {}
    subject = SUBJECT_ROOT[audience_of(customer_id)]
    if roots is None or subject in roots:
        context[subject] = subject_view(customer_id, profile, now, tz_name, period_seconds, group)[
            1
        ]
    if roots is None or "journeys" in roots:
        context["journeys"] = dict(journeys or {})
    if roots is None or "now" in roots:
        # Templates show local time; CEL compares instants, unaffected by the zone.
        context["now"] = now.astimezone(tz)
    if journey is not None and (roots is None or "journey" in roots):
        context["journey"] = journey_view(journey, now, profile, interaction_events)
    if event is not None and (roots is None or "event" in roots):
        context["event"] = event_view(event)
    if extra:
        context.update(extra if roots is None else {k: v for k, v in extra.items() if k in roots})
    return context


class _GuardParts(NamedTuple):
    customer_id: str
    profile: Profile
    journey: JourneyState | None
    event: CustomerEvent | None
    now: datetime
    tz_name: str
    period_seconds: int | None
    interaction_events: tuple[str, ...] | None
    group: GroupInfo | None
    journeys: Callable[[], dict[str, str]] | None


def _subject_root(g: _GuardParts) -> Mapping[str, Any]:
    if audience_of(g.customer_id) == Audience.GROUP:
        return LazyMap(_GROUP, g.customer_id, g.profile, g.group or GroupInfo(), g.now, g.tz_name)
    return subject_view(g.customer_id, g.profile, g.now, g.tz_name, g.period_seconds, g.group)[1]


def _journey_root(g: _GuardParts) -> dict[str, Any]:
    assert g.journey is not None
    return journey_view(g.journey, g.now, g.profile, g.interaction_events)


def _event_root(g: _GuardParts) -> dict[str, Any]:
    assert g.event is not None
    return event_view(g.event)


def _guard_roots(
    audience: Audience, journey: bool, event: bool
) -> dict[str, Callable[[_GuardParts], Any]]:
    """The roots of a guard's context, each a function of its _GuardParts, in
    build_context's order."""
    roots: dict[str, Callable[[_GuardParts], Any]] = {
        SUBJECT_ROOT[audience]: _subject_root,
        "journeys": lambda g: dict(g.journeys() if g.journeys else {}),
        "now": lambda g: g.now.astimezone(zone(g.tz_name)),
    }
    if journey:
        roots["journey"] = _journey_root
    if event:
        roots["event"] = _event_root
    return roots


# Made once per audience and whether there is a journey and an event, not per context.
_GUARD_ROOTS = {
    (audience, journey, event): _guard_roots(audience, journey, event)
    for audience in Audience
    for journey in (False, True)
    for event in (False, True)
}


def guard_context(
    customer_id: str,
    profile: Profile,
    journey: JourneyState | None,
    event: CustomerEvent | None,
    now: datetime,
    tz_name: str,
    period_seconds: int | None = None,
    interaction_events: tuple[str, ...] | None = None,
    group: GroupInfo | None = None,
    journeys: Callable[[], dict[str, str]] | None = None,
) -> LazyMap:
    """`build_context` for guards (no extra: a countdown is read in templates only), each
    root (`customer`, `journey`, ...) built when a guard first reads it: a condition reads
    one or two, and the whole context cost more than the guard. The values are those of
    the state when read: a caller that changes the state and reads on must first take
    `plain()`. The time zone is looked up now, so that an unknown zone fails where
    `build_context` fails."""
    zone(tz_name)
    roots = _GUARD_ROOTS[audience_of(customer_id), journey is not None, event is not None]
    return LazyMap(
        roots,
        _GuardParts(
            customer_id,
            profile,
            journey,
            event,
            now,
            tz_name,
            period_seconds,
            interaction_events,
            group,
            journeys,
        ),
    )
