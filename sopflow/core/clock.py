"""Local-time helpers: customers live in their own time zone, the core runs in UTC."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sopflow.language.plan import WindowPlan
from sopflow.language.windows import Window, parse_clock


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1024)
def window(plan: WindowPlan) -> Window:
    return Window(frozenset(plan.days), parse_clock(plan.start), parse_clock(plan.end))


def at_local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def parse_moment(value: Any, tz: ZoneInfo) -> datetime | None:
    """An attribute as a moment: a datetime, an ISO string, or a date (local midnight)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=tz)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if len(value) <= 10:  # a plain date: midnight where the customer lives
            return datetime.combine(moment.date(), time(0), tzinfo=tz)
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    return None


def quiet_until(moment: datetime, quiet: Window, tz: ZoneInfo) -> datetime:
    """`moment` if it is outside the quiet hours, else when they end."""
    local = moment.astimezone(tz)
    if not quiet.contains(local):
        return moment
    end_day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        end_day += timedelta(days=1)
    return at_local(end_day, quiet.end, tz).astimezone(moment.tzinfo)
