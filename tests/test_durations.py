from datetime import timedelta

import pytest

from sopflow.language.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("3h", timedelta(hours=3)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("30s", timedelta(seconds=30)),
        ("P3D", timedelta(days=3)),
        ("PT15M", timedelta(minutes=15)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("p2w", timedelta(weeks=2)),
    ],
)
def test_parses_compact_and_iso_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3 days", "", "P", "PT", "P1M", "3x", "-3d", "P1DT"])
def test_rejects_what_is_not_a_duration_and_names_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration: write 15m, 3h, 3d, 2w"):
        parse_duration(text)


def test_formats_weeks_only_when_whole() -> None:
    assert format_duration(timedelta(days=8, hours=3)) == "8d3h"
    assert format_duration(timedelta(days=14)) == "2w"
    assert format_duration(timedelta(days=30)) == "30d"
    assert format_duration(timedelta(0)) == "0s"
