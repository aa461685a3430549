"""Durations as operators write them: `15m`, `3h`, `3d`, `2w`, `1d12h`, or ISO 8601 `P3DT2H`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COMPACT = re.compile(r"^(?:\d+[smhdw])+$")
_COMPACT_PART = re.compile(r"(\d+)([smhdw])")
# Months and years are left out on purpose: their length depends on the calendar,
# so "P1M" would mean different waits for different customers.
_ISO = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError with the accepted forms when it is not one."""
    cleaned = text.strip()
    if _COMPACT.match(cleaned):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _COMPACT_PART.findall(cleaned))
        return timedelta(seconds=seconds)
    iso = _ISO.match(cleaned.upper())
    if iso and cleaned.upper() not in ("P", "PT") and not cleaned.upper().endswith("T"):
        weeks, days, hours, minutes, seconds = (int(g or 0) for g in iso.groups())
        return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(
        f"'{text}' is not a duration: write 15m, 3h, 3d, 2w (units s m h d w, "
        "combinable as 1d12h) or ISO 8601 such as P3D or PT15M"
    )


def format_duration(delta: timedelta) -> str:
    """Render a duration compactly: `2w` when it is whole weeks, else `30d`, `1d12h`, `15m`."""
    remaining = int(delta.total_seconds())
    if remaining == 0:
        return "0s"
    if remaining % _UNIT_SECONDS["w"] == 0:
        return f"{remaining // _UNIT_SECONDS['w']}w"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)
