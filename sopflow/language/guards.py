"""Guards: CEL expressions (the `cel` package, a maintained Rust implementation).

Deterministic and side-effect free, so the workflow evaluates them inside its sandbox.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import cel

from sopflow.language.context import (
    GUARD_ROOTS,
    ORDERS_FIELDS,
    ROOTS,
    SUBJECT_ROOT,
    guard_roots,
    sample_context,
)
from sopflow.language.diagnostics import did_you_mean
from sopflow.language.subjects import Audience

_FIELD_ACCESS = re.compile(r"\b(customer|group|staff|journey|event)\.([A-Za-z_]\w*)")
_ORDERS_ACCESS = re.compile(r"\bcustomer\.orders\.([A-Za-z_]\w*)")
_OPEN_MAP_ACCESS = re.compile(r"\b(attributes|data)\.([A-Za-z_]\w*)")
_MACRO_VARIABLE = re.compile(r"\.(?:exists|all|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")


@lru_cache(maxsize=4096)
def compile_guard(source: str) -> Any:
    """Parse once; the program is reused for every customer."""
    return cel.compile(source)


def evaluate_guard(source: str, context: dict[str, Any]) -> bool:
    """True only when the guard evaluates to true; an error (a missing attribute) is false."""
    try:
        program = compile_guard(source)
        # Convert only the roots the guard reads: converting the whole context on every
        # call cost more than evaluating the guard.
        needed = {name: context[name] for name in _roots(source) if name in context}
        return program.execute(cel_values(needed)) is True
    except Exception:  # any CEL failure (a missing attribute) means "condition not met"
        return False


@lru_cache(maxsize=4096)
def _roots(source: str) -> tuple[str, ...]:
    return tuple(name for name in compile_guard(source).variables() if name in GUARD_ROOTS)


def cel_values(value: Any) -> Any:
    """CEL takes timestamps only in UTC: a zoneinfo-aware datetime fails to convert."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {k: cel_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cel_values(v) for v in value]
    return value


def other_audience_root(name: str, audience: Audience) -> str | None:
    """The message for a subject root of another audience (`customer` in a group
    playbook), or None when the name is no such root."""
    if name not in SUBJECT_ROOT.values() or name == SUBJECT_ROOT[audience]:
        return None
    return (
        f"'{name}' cannot exist in a playbook with audience {audience.value}: "
        f"it reads '{SUBJECT_ROOT[audience]}'"
    )


def check_guard(
    source: str, *, with_event: bool, audience: Audience = Audience.CUSTOMER
) -> str | None:
    """A message saying why the guard cannot work, or None when it type-checks."""
    try:
        program = compile_guard(source)
    except ValueError as e:
        first_line = str(e).split("\n")[0]
        return f"guard does not parse: {first_line}"
    bound = set(_MACRO_VARIABLE.findall(source))
    roots = guard_roots(audience)
    roots = roots if with_event else roots - {"event"}
    for name in program.variables():
        if name not in roots and name not in bound:
            if name == "event":
                return "guard reads 'event', but no event is at hand here (only in event triggers)"
            elsewhere = other_audience_root(name, audience)
            if elsewhere:
                return f"guard reads {elsewhere}"
            return f"guard reads unknown name '{name}'{did_you_mean(name, roots)}"
    for root, field in _FIELD_ACCESS.findall(source):
        if root in roots and field not in ROOTS[root]:
            return f"unknown field '{root}.{field}'{did_you_mean(field, ROOTS[root])}"
    for field in _ORDERS_ACCESS.findall(source):
        if field not in ORDERS_FIELDS:
            return f"unknown field 'customer.orders.{field}'{did_you_mean(field, ORDERS_FIELDS)}"
    return _type_check(program, source, audience)


def _type_check(program: Any, source: str, audience: Audience) -> str | None:
    # Open maps (attributes, event data) have no declared types: the guard type-checks
    # if it evaluates without a type error for at least one type of their values.
    open_keys = {key for _, key in _OPEN_MAP_ACCESS.findall(source)}
    last_error = None
    for sample in ("text", 1, 1.5, True):
        try:
            result = program.execute(cel_values(sample_context(open_keys, sample, audience)))
        except TypeError as e:
            last_error = str(e).split(". ")[0]
            continue
        except Exception:
            return None
        if not isinstance(result, bool):
            return f"guard must be true or false, but gives {type(result).__name__}"
        return None
    return f"guard does not type-check: {last_error}"
