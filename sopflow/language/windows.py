"""Local clock times, send windows ("weekdays 11:30-13:00") and quiet hours ("21:00-09:00")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_SETS = {
    "daily": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_WINDOW = re.compile(r"^(?:(?P<days>[a-z,]+)\s+)?(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$")


@lru_cache(maxsize=1024)  # the core reads a trigger's time of day at every look at it
def parse_clock(text: str) -> time:
    """'10:00' -> time(10, 0); ValueError naming the form otherwise."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a time of day: write HH:MM, e.g. 10:00")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a local time range; the range may cross midnight."""

    days: frozenset[int]
    start: time
    end: time

    def contains(self, local: datetime) -> bool:
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        # Crosses midnight: the part after midnight belongs to the previous day's window.
        if clock >= self.start:
            return local.weekday() in self.days
        return clock < self.end and (local.weekday() - 1) % 7 in self.days

    def next_open(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """`moment` if the window is open then, else the next opening (aware, in UTC's tz)."""
        local = moment.astimezone(zone)
        if self.contains(local):
            return moment
        for day_offset in range(0, 8):
            day = (local + timedelta(days=day_offset)).date()
            opening = datetime.combine(day, self.start, tzinfo=zone)
            if opening > local and opening.weekday() in self.days:
                return opening.astimezone(moment.tzinfo)
        raise ValueError("window never opens")  # unreachable: parse_window refuses empty days


def parse_window(text: str) -> Window:
    """'weekdays 11:30-13:00', 'weekends 10:00-20:00', 'mon,fri 18:00-20:00', '21:00-09:00'."""
    match = _WINDOW.match(text.strip().lower())
    if not match:
        raise ValueError(
            f"'{text}' is not a window: write [daily|weekdays|weekends|mon,tue,...] HH:MM-HH:MM"
        )
    days_text = match.group("days") or "daily"
    if days_text in _DAY_SETS:
        days = _DAY_SETS[days_text]
    else:
        names = days_text.split(",")
        unknown = [n for n in names if n not in _DAY_NAMES]
        if unknown:
            raise ValueError(f"unknown day '{unknown[0]}' in window '{text}': use mon..sun")
        days = frozenset(_DAY_NAMES.index(n) for n in names)
    start, end = parse_clock(match.group("start")), parse_clock(match.group("end"))
    if start == end:
        raise ValueError(f"window '{text}' is empty: start and end are the same time")
    return Window(days, start, end)


def next_open_any(windows: tuple[Window, ...], moment: datetime, zone: ZoneInfo) -> datetime:
    """The earliest opening of any of the windows at or after `moment` (the next wins)."""
    return min(w.next_open(moment, zone) for w in windows)


MINUTES_PER_WEEK = 7 * 24 * 60


def week_minutes(window: Window) -> frozenset[int]:
    """The minutes of a week (0 = Monday 00:00) the window is open, for checks that
    compare windows with the quiet hours: a week is 10,080 minutes, small enough to list."""
    start = window.start.hour * 60 + window.start.minute
    end = window.end.hour * 60 + window.end.minute
    length = end - start if start < end else 24 * 60 - start + end
    return frozenset(
        (day * 24 * 60 + start + offset) % MINUTES_PER_WEEK
        for day in window.days
        for offset in range(length)
    )
