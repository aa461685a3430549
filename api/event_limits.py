"""What an event may carry: checked at the API, before anything reaches a workflow.

Every limit here is far under Temporal's payload limits (2 MB a payload, 2 KB a search
attribute value) and is listed in docs/limits.md. A refusal is a 422 whose details name
the field and the limit: `data.attributes.note: a string of 9,000 characters: at most
8,192`. The journey core bounds what it stores as well (sopflow/core/state.py): these
checks give the sender a clear answer, the core's bounds hold whatever gets past them.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from api.models import ErrorDetail
from sopflow.core.journey import MAX_AMOUNT
from sopflow.core.state import (
    ATTRIBUTE_KEY_MAX_CHARS,
    ATTRIBUTE_VALUE_MAX_BYTES,
    TAG_MAX_CHARS,
)

MAX_DATA_BYTES = 32 * 1024  # the whole `data` object, as JSON
MAX_DATA_DEPTH = 10  # objects and lists inside `data`
MAX_STRING_CHARS = 8 * 1024  # any string in `data`
MAX_KEY_CHARS = 100  # any key in `data`
MAX_EVENT_ATTRIBUTES = 50  # keys of `data.attributes` in one event
MAX_CHANNEL_CODE_CHARS = 100  # `data.channel_code`: the acquisition channel of a new fan
# JSON numbers: integers as wide as a signed 64-bit integer (what CEL guards and most
# databases hold); floats finite.
MAX_INTEGER = 2**63 - 1
# Strings that Python's float() reads as a non-finite number.
NON_FINITE = frozenset({"nan", "inf", "infinity"})
ORDER_EVENTS = frozenset({"order.paid", "order.refunded"})
TAG_EVENTS = frozenset({"tag.added", "tag.removed"})


def check_occurred_at(
    occurred_at: datetime | None, earliest: datetime, latest: datetime, skew_seconds: int = 0
) -> list[ErrorDetail]:
    """An event's time between the earliest date sopflow accepts and now plus the skew."""
    if occurred_at is None:
        return []
    if occurred_at < earliest:
        return [
            ErrorDetail(
                field="occurred_at",
                message=f"{occurred_at.isoformat()} is before {earliest.isoformat()}, the "
                "earliest time an event may have (SOPFLOW_EARLIEST_EVENT_TIME); check the "
                "sender's clock",
                limit=f"not before {earliest.isoformat()} (SOPFLOW_EARLIEST_EVENT_TIME)",
            )
        ]
    if occurred_at > latest:
        return [
            ErrorDetail(
                field="occurred_at",
                message=f"{occurred_at.isoformat()} is in the future; check the sender's "
                "clock and time zone",
                limit=f"at most {skew_seconds} s ahead of the server's clock "
                "(SOPFLOW_MAX_EVENT_SKEW_SECONDS)",
            )
        ]
    return []


def check_data(event_type: str, data: dict[str, Any]) -> list[ErrorDetail]:
    """Every limit `data` breaks, each naming the field (`data.a.b`) and the limit."""
    problems: list[ErrorDetail] = []
    size = _json_size(data)
    if size > MAX_DATA_BYTES:
        problems.append(
            ErrorDetail(field="data", message=f"{size:,} bytes of JSON: at most {MAX_DATA_BYTES:,}")
        )
        return problems  # walking it would only repeat that it is too big
    _walk(data, "data", 1, problems)
    if event_type in ORDER_EVENTS and "amount" in data:
        problems += _amount(data["amount"])
    if event_type in TAG_EVENTS and "tag" in data:
        problems += _string_field(data["tag"], "data.tag", TAG_MAX_CHARS)
    if "channel_code" in data:
        problems += _string_field(data["channel_code"], "data.channel_code", MAX_CHANNEL_CODE_CHARS)
    attributes = data.get("attributes")
    if isinstance(attributes, dict):
        problems += _attributes(attributes)
    return problems


def _walk(value: Any, field: str, depth: int, problems: list[ErrorDetail]) -> None:
    if isinstance(value, dict | list) and depth > MAX_DATA_DEPTH:
        problems.append(
            ErrorDetail(field=field, message=f"nested deeper than {MAX_DATA_DEPTH} levels")
        )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_KEY_CHARS:
                problems.append(
                    ErrorDetail(
                        field=f"{field}.{key[:40]}…",
                        message=f"a key of {len(key):,} characters: at most {MAX_KEY_CHARS}",
                    )
                )
                continue
            _walk(item, f"{field}.{key}", depth + 1, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{field}.{index}", depth + 1, problems)
    elif isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        problems.append(
            ErrorDetail(
                field=field,
                message=f"a string of {len(value):,} characters: at most {MAX_STRING_CHARS:,}",
            )
        )
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and abs(value) > MAX_INTEGER:
        problems.append(
            ErrorDetail(field=field, message="an integer beyond 64 bits: at most 2^63 - 1")
        )
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append(
            ErrorDetail(field=field, message=f"{value} is not a finite number (NaN or infinity)")
        )


def _amount(value: Any) -> list[ErrorDetail]:
    """An order's amount: a finite number (or a numeric string) within ±MAX_AMOUNT."""
    field = "data.amount"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return [ErrorDetail(field=field, message="must be a number, e.g. 59.9")]
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in NON_FINITE:
        return [ErrorDetail(field=field, message=f"'{value}' is not a finite number")]
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return [ErrorDetail(field=field, message=f"'{value}' is not a number, e.g. 59.9")]
    if not math.isfinite(number):
        return [ErrorDetail(field=field, message=f"{value} is not a finite number")]
    if abs(number) > MAX_AMOUNT:
        return [ErrorDetail(field=field, message=f"{value} is beyond ±{MAX_AMOUNT:,.0f}")]
    return []


def _string_field(value: Any, field: str, limit: int) -> list[ErrorDetail]:
    if not isinstance(value, str):
        return [ErrorDetail(field=field, message="must be a string")]
    if len(value) > limit:
        return [
            ErrorDetail(
                field=field, message=f"a string of {len(value):,} characters: at most {limit}"
            )
        ]
    return []


def _attributes(attributes: dict[str, Any]) -> list[ErrorDetail]:
    problems = []
    if len(attributes) > MAX_EVENT_ATTRIBUTES:
        problems.append(
            ErrorDetail(
                field="data.attributes",
                message=f"{len(attributes)} attributes in one event: at most "
                f"{MAX_EVENT_ATTRIBUTES}",
            )
        )
    for key, value in attributes.items():
        if len(key) > ATTRIBUTE_KEY_MAX_CHARS:
            continue  # already named by the walk
        size = _json_size(value)
        if size > ATTRIBUTE_VALUE_MAX_BYTES:
            problems.append(
                ErrorDetail(
                    field=f"data.attributes.{key}",
                    message=f"a value of {size:,} bytes of JSON: at most "
                    f"{ATTRIBUTE_VALUE_MAX_BYTES:,}",
                )
            )
    return problems


def _json_size(value: Any) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False).encode())
    except (ValueError, RecursionError):
        return MAX_DATA_BYTES + 1
