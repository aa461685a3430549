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

from sopflow.core.clock import at_local, parse_moment, zone
from sopflow.core.state import JourneyState, Profile
from sopflow.language.plan import TriggerPlan
from sopflow.language.windows import parse_clock

PROFILE_MOMENTS = (
    "added_at",
    "last_interaction_at",
    "last_order_at",
    "predicted_next_purchase_at",
    "first_order_at",
)


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


def countdown_deadline(
    trigger: TriggerPlan, journey: JourneyState, profile: Profile, tz_name: str
) -> datetime | None:
    countdown = trigger.countdown
    assert countdown is not None
    if countdown.deadline_after_seconds is not None:
        return journey.entered_stage_at + timedelta(seconds=countdown.deadline_after_seconds)
    return attribute_moment(countdown.deadline_attribute or "", journey, profile, tz_name)


def next_due(
    trigger: TriggerPlan, index: int, journey: JourneyState, profile: Profile, tz_name: str
) -> datetime | None:
    """The next time this trigger fires in the current stage visit, or None."""
    entered = journey.entered_stage_at
    last = journey.fired.get(str(index))
    # A moment qualifies if it is not before the stage was entered and after the last firing.
    floor = entered if last is None else last

    def qualifies(moment: datetime | None) -> bool:
        if moment is None or moment < entered:
            return False
        return last is None or moment > last

    tz = zone(tz_name)
    match trigger.kind:
        case "after":
            due = entered + timedelta(seconds=trigger.after_seconds or 0)
            return due if last is None else None
        case "wait":
            if trigger.timeout_seconds is None or last is not None:
                return None
            return entered + timedelta(seconds=trigger.timeout_seconds)
        case "day":
            if profile.added_at is None or last is not None:
                return None
            added_local = profile.added_at.astimezone(tz).date()
            clock = parse_clock(trigger.time or "10:00")
            due = at_local(added_local + timedelta(days=trigger.day or 0), clock, tz)
            return due if qualifies(due) else None
        case "at":
            return _next_at(trigger, journey, profile, tz_name, qualifies)
        case "every":
            step = timedelta(seconds=trigger.every_seconds or 1)
            periods = int((floor - entered) / step) + 1
            return entered + step * periods
        case "cron":
            return _cron_next(trigger.cron or "", floor.astimezone(tz))
        case "inactivity":
            since = profile.last_interaction_at or journey.enrolled_at
            due = max(since + timedelta(seconds=trigger.inactive_seconds or 0), entered)
            return due if qualifies(due) else None
        case "countdown":
            deadline = countdown_deadline(trigger, journey, profile, tz_name)
            if deadline is None:
                return None
            offsets = trigger.countdown.offsets_seconds if trigger.countdown else ()
            moments = [deadline - timedelta(seconds=s) for s in offsets]
            if trigger.goto:
                moments.append(deadline)
            upcoming = [m for m in moments if qualifies(m)]
            return min(upcoming) if upcoming else None
    return None  # event and condition triggers have no time


@lru_cache(maxsize=4096)
def _cron_next(expression: str, start: datetime) -> datetime:
    """The next cron moment after `start`: the same between two firings, however many
    events arrive (a group's 300 joins asked croniter 600 times for it)."""
    moment: datetime = croniter(expression, start).get_next(datetime)
    return moment


def _next_at(
    trigger: TriggerPlan, journey: JourneyState, profile: Profile, tz_name: str, qualifies: Any
) -> datetime | None:
    at = trigger.at
    assert at is not None
    tz = zone(tz_name)
    base = attribute_moment(at.attribute, journey, profile, tz_name)
    if base is None:
        return None

    def occurrence(moment: datetime) -> datetime:
        moment = moment + timedelta(seconds=at.offset_seconds)
        if at.time is not None:
            moment = at_local(moment.astimezone(tz).date(), parse_clock(at.time), tz)
        return moment

    if not at.yearly:
        due = occurrence(base)
        return due if qualifies(due) else None
    start_year = journey.entered_stage_at.astimezone(tz).year
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
