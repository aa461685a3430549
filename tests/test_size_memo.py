"""Attribute sizes are remembered for short texts and whole numbers, by type: a value
equal to another in Python but not of its JSON size gets its own."""

from __future__ import annotations

import json
from typing import Any

from sopflow.core import profile


def measured(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode())


def test_remembered_sizes_are_the_measured_ones_type_by_type() -> None:
    profile._SIZES.clear()
    values: list[Any] = [True, 1, 1.0, "1", "王先生", "x" * 300, 10**20, False, 0, -0.0, 0.0]
    for _ in range(2):  # the second time from what was remembered
        assert [profile._json_size(v) for v in values] == [measured(v) for v in values]
    assert (bool, True) in profile._SIZES and (int, 1) in profile._SIZES
    assert (str, "x" * 300) not in profile._SIZES  # long texts are measured each time
