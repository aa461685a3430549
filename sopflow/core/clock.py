"""Local-time helpers: customers live in their own time zone, the core runs in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sopflow.language.plan import WindowPlan
from sopflow.language.windows import Window, parse_clock

# The instants the core computes with. Python's datetime ends at years 1 and 9999, where
# an offset or a time zone conversion raises OverflowError; a customer's moments (events,
# attributes such as a birthday, due times) are kept between these bounds instead, far
# enough inside them that any zone and any playbook duration stays representable.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def bounded(moment: datetime) -> datetime:
    """`moment`, moved to the nearest bound of what the core computes with."""
    if moment < EARLIEST:
        return EARLIEST
    if moment > LATEST:
        return LATEST
    return moment


def shift(moment: datetime, seconds: float = 0, *, days: float = 0) -> datetime:
    """`moment` plus a duration (negative: minus), saturating at EARLIEST and LATEST: a
    duration of a million days is due "never", not an OverflowError."""
    try:
        moved = moment + timedelta(days, seconds)
    except OverflowError:
        return LATEST if seconds > 0 or days > 0 else EARLIEST
    # `bounded`, inlined: the core shifts a moment for every timer it looks at.
    return moved if EARLIEST <= moved <= LATEST else bounded(moved)


def add_days(day: date, days: int) -> date:
    """`day` plus `days`, saturating at the bounds' dates."""
    try:
        moved = day + timedelta(days=days)
    except OverflowError:
        return (LATEST if days > 0 else EARLIEST).date()
    return min(max(moved, EARLIEST.date()), LATEST.date())


D = TypeVar("D", date, datetime)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1024)
def window(plan: WindowPlan) -> Window:
    return Window(frozenset(plan.days), parse_clock(plan.start), parse_clock(plan.end))


def at_local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def parse_moment(value: Any, tz: ZoneInfo) -> datetime | None:
    """An attribute as a moment: a datetime, an ISO string, or a date (local midnight).

    A year outside the core's bounds (a birthday of 0001-01-01, a deadline in 9999) keeps
    its month and day in the nearest year inside them, so yearly moments still fall on
    the customer's day and nothing overflows."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        # A plain date: midnight where the customer lives.
        value = parsed.date() if len(value) <= 10 else parsed
    if isinstance(value, datetime):
        moment: datetime = _within_years(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(_within_years(value), time(0), tzinfo=tz)
    return None


def _within_years(value: D) -> D:
    """A date or datetime moved into the years the core computes with (29 February to the
    28th when the year it lands in has none)."""
    year = min(max(value.year, EARLIEST.year + 1), LATEST.year - 1)
    if year == value.year:
        return value
    try:
        return value.replace(year=year)
    except ValueError:
        return value.replace(year=year, day=28)


def quiet_until(moment: datetime, quiet: Window, tz: ZoneInfo) -> datetime:
    """`moment` if it is outside the quiet hours, else when they end."""
    local = moment.astimezone(tz)
    if not quiet.contains(local):
        return moment
    end_day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        end_day += timedelta(days=1)
    return at_local(end_day, quiet.end, tz).astimezone(moment.tzinfo)
