"""When is each time trigger of a stage next due? Pure functions of the state.

Timers are data: nothing is stored but the time each trigger last fired; the next due
time is recomputed from the profile and the journey, so a changed birthday or a new
interaction moves the timer without any bookkeeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from croniter import croniter

from sopflow.core.clock import LATEST, add_days, at_local, bounded, parse_moment, shift, zone
from sopflow.core.state import JourneyState, Profile
from sopflow.language.events import PROFILE_MOMENTS
from sopflow.language.plan import EVERYWHERE, TriggerPlan
from sopflow.language.windows import parse_clock


def attribute_moment(
    name: str, journey: JourneyState, profile: Profile, tz_name: str
) -> datetime | None:
    """A named moment: a profile field, else a journey attribute, else a customer attribute."""
    tz = zone(tz_name)
    if name in PROFILE_MOMENTS:
        value: Any = getattr(profile, name)
        return parse_moment(value, tz) if value is not None else None
    for source in (journey.attributes, profile.attributes):
        if name in source:
            return parse_moment(source[name], tz)
    return None


def trigger_start(journey: JourneyState, key: str) -> datetime:
    """When a trigger's time starts: entering the stage, or for a playbook-wide trigger
    (which belongs to the journey, not the stage) the journey's start."""
    return journey.enrolled_at if key.startswith(EVERYWHERE) else journey.entered_stage_at


def countdown_deadline(
    trigger: TriggerPlan, journey: JourneyState, profile: Profile, tz_name: str, start: datetime
) -> datetime | None:
    """The countdown's deadline, or None when it is missing or unreadable."""
    countdown = trigger.countdown
    assert countdown is not None
    if countdown.deadline_after_seconds is not None:
        return shift(start, countdown.deadline_after_seconds)
    if countdown.deadline_event_key is not None:
        value = journey.enrolment_data.get(countdown.deadline_event_key)
        return parse_moment(value, zone(tz_name)) if value is not None else None
    return attribute_moment(countdown.deadline_attribute or "", journey, profile, tz_name)


def countdown_branch(
    trigger: TriggerPlan, start: datetime, deadline: datetime | None
) -> str | None:
    """'on_missing' or 'on_past' when the countdown declares that branch and its case
    holds: the deadline is missing, or was already past when the countdown started
    (`start`: entering the stage)."""
    countdown = trigger.countdown
    if countdown is None:
        return None
    if deadline is None:
        return "on_missing" if countdown.on_missing is not None else None
    if deadline < start and countdown.on_past is not None:
        return "on_past"
    return None


def next_due(
    trigger: TriggerPlan,
    key: str,
    journey: JourneyState,
    profile: Profile,
    tz_name: str,
    interaction_events: tuple[str, ...] | None = None,
) -> datetime | None:
    """The next time this trigger fires in the current stage visit (for a playbook-wide
    trigger, in the journey), or None. `key`: the trigger's key in `Plan.active_triggers`.

    `interaction_events`: the playbook's own list of what counts as interaction (None:
    the catalogue's), for `inactive_for`.

    The due times of the costly kinds (a moment read from an attribute, a day after
    joining, a countdown) are remembered by the exact data they read (`_inputs`): the
    core asks for every timed trigger after every step, and that data rarely changed."""
    if trigger.kind not in _REMEMBERED:
        return _next_due(trigger, key, journey, profile, tz_name, interaction_events)
    try:
        inputs = (id(trigger), key, tz_name, *_inputs(trigger, key, journey, profile))
        known = _DUE.get(inputs)
    except TypeError:  # data that cannot be a key (a list attribute): computed each time
        return _next_due(trigger, key, journey, profile, tz_name, interaction_events)
    if known is not None and known[0] is trigger:
        return known[1]
    due = _next_due(trigger, key, journey, profile, tz_name, interaction_events)
    if len(_DUE) >= DUE_TIMES_KEPT:
        _DUE.clear()  # cheaper than tracking age; refilled within a few steps
    # The trigger itself is kept with its due time: its id cannot be reused while kept.
    _DUE[inputs] = (trigger, due)
    return due


# Due times remembered, by trigger and the exact data that trigger's kind reads.
DUE_TIMES_KEPT = 8192
_DUE: dict[tuple[Any, ...], tuple[TriggerPlan, datetime | None]] = {}
_REMEMBERED = frozenset({"at", "day", "countdown"})


def _exact(value: Any) -> tuple[Any, ...]:
    """`value` as a key that tells apart what `==` does not: True, 1 and 1.0; the same
    instant in two time zones (a due time keeps the zone of what it came from). Raises
    TypeError for data that cannot be a key."""
    if isinstance(value, datetime):
        return (datetime, value, value.tzinfo, value.fold)
    hash(value)
    return (type(value), value)


def _attribute_input(name: str, journey: JourneyState, profile: Profile) -> tuple[Any, ...]:
    """What `attribute_moment` reads for `name`: where it was found, and its value."""
    if name in PROFILE_MOMENTS:
        return ("profile", _exact(getattr(profile, name)))
    for where, source in (("journey", journey.attributes), ("customer", profile.attributes)):
        if name in source:
            return (where, _exact(source[name]))
    return ("missing",)


def _inputs(
    trigger: TriggerPlan, key: str, journey: JourneyState, profile: Profile
) -> tuple[Any, ...]:
    """Everything `_next_due` reads for a trigger of a remembered kind, besides the trigger
    and the time zone: when its time started, when it last fired, and what its kind reads.
    A new kind, or a kind that reads more, must say so here (tests/test_due_cache.py)."""
    common = (_exact(trigger_start(journey, key)), _exact(journey.fired.get(key)))
    match trigger.kind:
        case "day":
            return (*common, _exact(profile.added_at))
        case "at":
            assert trigger.at is not None
            return (*common, _attribute_input(trigger.at.attribute, journey, profile))
        case "countdown":
            countdown = trigger.countdown
            assert countdown is not None
            if countdown.deadline_after_seconds is not None:
                return common
            if countdown.deadline_event_key is not None:
                return (*common, _exact(journey.enrolment_data.get(countdown.deadline_event_key)))
            name = countdown.deadline_attribute or ""
            return (*common, _attribute_input(name, journey, profile))
    raise TypeError(f"due times of {trigger.kind} triggers are not remembered")


def _next_due(
    trigger: TriggerPlan,
    key: str,
    journey: JourneyState,
    profile: Profile,
    tz_name: str,
    interaction_events: tuple[str, ...] | None = None,
) -> datetime | None:
    """`next_due`, computed."""
    entered = trigger_start(journey, key)
    last = journey.fired.get(key)
    if last is not None and last >= LATEST:
        return None  # given up on (its due time could not be computed): never again here
    kind = trigger.kind
    if kind == "after" or kind == "wait":
        # The common kinds first, without the others' setup: due once, from the start.
        zone(tz_name)  # as for every kind: an unknown zone fails here
        if last is not None:
            return None
        if kind == "after":
            return shift(entered, trigger.after_seconds or 0)
        if trigger.timeout_seconds is None:
            return None
        return shift(entered, trigger.timeout_seconds)
    # A moment qualifies if it is not before the stage was entered and after the last firing.
    floor = entered if last is None else last

    def qualifies(moment: datetime | None) -> bool:
        if moment is None or moment < entered:
            return False
        return last is None or moment > last

    tz = zone(tz_name)
    match kind:
        case "day":
            if profile.added_at is None or last is not None:
                return None
            added_local = profile.added_at.astimezone(tz).date()
            clock = parse_clock(trigger.time or "10:00")
            due = at_local(add_days(added_local, trigger.day or 0), clock, tz)
            return due if qualifies(due) else None
        case "at":
            return _next_at(trigger, journey, profile, tz_name, entered, qualifies)
        case "every":
            every = trigger.every_seconds or 1
            # Whole periods since the stage was entered, in exact microseconds.
            elapsed = (floor - entered) // timedelta(microseconds=1)
            periods = int(elapsed / (every * 1_000_000)) + 1
            return shift(entered, every * periods)
        case "cron":
            return _cron_next(trigger.cron or "", floor.astimezone(tz))
        case "inactivity":
            since = profile.last_interaction(interaction_events) or journey.enrolled_at
            due = max(shift(since, trigger.inactive_seconds or 0), entered)
            return due if qualifies(due) else None
        case "countdown":
            deadline = countdown_deadline(trigger, journey, profile, tz_name, entered)
            if countdown_branch(trigger, entered, deadline) is not None:
                return entered if last is None else None  # taken on entering the stage
            if deadline is None:
                return None
            offsets = trigger.countdown.offsets_seconds if trigger.countdown else ()
            # The earliest qualifying moment; a countdown is looked at after every step.
            upcoming = deadline if trigger.goto and qualifies(deadline) else None
            for seconds in offsets:
                moment = shift(deadline, -seconds)
                if (upcoming is None or moment < upcoming) and qualifies(moment):
                    upcoming = moment
            return upcoming
    return None  # event and condition triggers have no time


@lru_cache(maxsize=4096)
def _cron_next(expression: str, start: datetime) -> datetime:
    """The next cron moment after `start` (within the core's bounds): the same between two
    firings, however many events arrive (a group's 300 joins asked croniter 600 times
    for it)."""
    moment: datetime = croniter(expression, start).get_next(datetime)
    return bounded(moment)


def _next_at(
    trigger: TriggerPlan,
    journey: JourneyState,
    profile: Profile,
    tz_name: str,
    start: datetime,
    qualifies: Any,
) -> datetime | None:
    at = trigger.at
    assert at is not None
    tz = zone(tz_name)
    base = attribute_moment(at.attribute, journey, profile, tz_name)
    if base is None:
        return None

    def occurrence(moment: datetime) -> datetime:
        moment = shift(moment, at.offset_seconds)
        if at.time is not None:
            moment = at_local(moment.astimezone(tz).date(), parse_clock(at.time), tz)
        return moment

    if not at.yearly:
        due = occurrence(base)
        return due if qualifies(due) else None
    start_year = start.astimezone(tz).year
    for year in range(start_year - 1, start_year + 3):
        try:
            due = occurrence(base.replace(year=year))
        except ValueError:  # 29 February in a common year: celebrate on the 28th
            due = occurrence(base.replace(year=year, day=28))
        if qualifies(due):
            return due
    return None


def countdown_remaining(deadline: datetime, moment: datetime) -> str:
    """'7d', '3h', '15m', '1d12h': what is left before the deadline, as an operator writes it."""
    minutes = round(max(deadline - moment, timedelta(0)).total_seconds() / 60)
    parts = [(minutes // 1440, "d"), (minutes % 1440 // 60, "h"), (minutes % 60, "m")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0m"
