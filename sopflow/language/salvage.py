"""What is left of a document that failed its schema check, so one run shows everything.

A document with a schema error is never compiled. But the others refer to it (an `enrol`
of its playbook, its content items, its tag groups), and it has semantic mistakes of its
own that the operator would otherwise meet only on the next run. So the refused parts
are pruned (the unknown key, the bad value, else the smallest item holding it) until the
rest validates: the rest is context for the other documents' checks, and when only
unknown keys were pruned, its own semantic checks run too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from sopflow.language import models
from sopflow.language.diagnostics import KeyPath
from sopflow.language.yaml_positions import PositionIndex

# Each round prunes every refused place; cascades (an emptied action) take a few more.
MAX_ROUNDS = 20


@dataclass(frozen=True)
class Salvaged:
    """A document that failed its schema check: its kind and name, and what validated
    once the refused parts were pruned (None when nothing could be saved)."""

    file: str
    line: int
    positions: PositionIndex
    kind: str
    name: str | None
    model: BaseModel | None
    # Only unknown keys were pruned: the rest is what the operator wrote, so its own
    # semantic checks are meaningful.
    only_unknown_keys: bool


def salvage(
    data: dict[str, Any], file: str, line: int, positions: PositionIndex
) -> Salvaged | None:
    """The salvage of one refused document (a mapping), or None for an unknown kind."""
    kind = str(data.get("kind", "Playbook"))
    model_class = models.DOCUMENT_KINDS.get(kind)
    if model_class is None:
        return None
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    pruned = copy.deepcopy(data)
    only_unknown_keys = True
    for _ in range(MAX_ROUNDS):
        try:
            model = model_class.model_validate(pruned)
        except ValidationError as error:
            places = []
            for item in error.errors():
                only_unknown_keys &= item["type"] == "extra_forbidden"
                place = _existing_place(pruned, tuple(item["loc"]))
                if not place:
                    return Salvaged(file, line, positions, kind, _text(name), None, False)
                places.append(place)
            _prune(pruned, places)
            continue
        return Salvaged(file, line, positions, kind, _text(name), model, only_unknown_keys)
    return Salvaged(file, line, positions, kind, _text(name), None, False)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _existing_place(data: Any, location: KeyPath) -> KeyPath:
    """The deepest part of `location` present in `data`: pydantic's locations also hold
    union tags and validator names, which are not keys of the document."""
    place: list[str | int] = []
    current = data
    for part in location:
        present = (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        )
        if not present:
            continue
        current = current[part]
        place.append(part)
    return tuple(place)


def _prune(data: dict[str, Any], places: list[KeyPath]) -> None:
    """Delete each place once, deepest and latest first, so list indices stay valid."""
    for place in sorted(set(places), key=_order, reverse=True):
        if any(place[: len(other)] == other for other in places if len(other) < len(place)):
            continue  # a shorter place holding this one goes anyway
        parent: Any = data
        for part in place[:-1]:
            parent = parent[part]
        key = place[-1]
        if isinstance(parent, dict):
            parent.pop(key, None)
        elif isinstance(parent, list) and isinstance(key, int) and key < len(parent):
            del parent[key]


def _order(place: KeyPath) -> tuple[tuple[int, str], ...]:
    return tuple((p, "") if isinstance(p, int) else (-1, p) for p in place)
