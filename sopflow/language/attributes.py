"""Attributes read but never written: a misspelt deadline or guard name is found by
`validate`, not by a customer who waits in a stage forever.

Reads are found in every guard and template (`customer.attributes.x`,
`customer.attributes['x']`, `customer.attributes.get('x')`, the same for `journey`), in
`at` triggers and in countdown deadlines. Writes are the `set` actions of every playbook
in the bundle, the attributes playbooks declare events bring (`event_attributes`), the
moments documented events keep (`added_at`, `last_order_at`, ...), and, for the journey's
own attributes, the playbook's `set_journey` actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sopflow.language import models
from sopflow.language.diagnostics import KeyPath, did_you_mean
from sopflow.language.events import PROFILE_MOMENTS
from sopflow.language.walk import walk_actions, walk_triggers

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_READ = re.compile(
    rf"\b(?P<scope>customer|journey)\.attributes"
    rf"(?:\.(?P<dotted>{_NAME})(?!\s*\()"
    rf"|\[\s*['\"](?P<indexed>[^'\"]+)['\"]\s*\]"
    rf"|\.get\(\s*['\"](?P<got>[^'\"]+)['\"])"
)


@dataclass(frozen=True)
class Read:
    scope: str  # customer | journey | moment (an `at` or a countdown: either, or a moment)
    name: str
    path: KeyPath


def customer_writes(playbooks: Iterable[models.Playbook]) -> set[str]:
    """The customer attributes a bundle's playbooks write or declare events bring."""
    written: set[str] = set()
    for playbook in playbooks:
        written |= set(playbook.event_attributes)
        for _, _, action in walk_actions(playbook):
            if isinstance(action, models.SetAction):
                written |= set(action.set)
    return written


def journey_writes(playbook: models.Playbook) -> set[str]:
    return {
        key
        for _, _, action in walk_actions(playbook)
        if isinstance(action, models.SetJourneyAction)
        for key in action.set_journey
    }


def reads_in_text(text: str, path: KeyPath) -> Iterator[Read]:
    seen: set[tuple[str, str]] = set()
    for match in _READ.finditer(text):
        name = match["dotted"] or match["indexed"] or match["got"]
        if (match["scope"], name) not in seen:
            seen.add((match["scope"], name))
            yield Read(match["scope"], name, path)


def reads_in_strings(value: Any, path: KeyPath = ()) -> Iterator[Read]:
    """Reads in every string of a document, with the key path the operator wrote
    (guards and templates are its strings)."""
    if isinstance(value, str):
        yield from reads_in_text(value, path)
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            yield from reads_in_strings(getattr(value, name), (*path, info.alias or name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from reads_in_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from reads_in_strings(item, (*path, index))


def playbook_reads(playbook: models.Playbook) -> Iterator[Read]:
    yield from reads_in_strings(playbook)
    for path, trigger in walk_triggers(playbook):
        if isinstance(trigger, models.AtTrigger):
            yield Read("moment", trigger.at.attribute, (*path, "at", "attribute"))
        if isinstance(trigger, models.CountdownTrigger):
            deadline = trigger.countdown.deadline
            # event.data.<key> is the enrolling event's; a malformed one is an error already.
            if deadline is not None and re.fullmatch(_NAME, deadline):
                yield Read("moment", deadline, (*path, "countdown", "deadline"))


def unwritten(
    reads: Iterable[Read], customer: set[str], journey: set[str]
) -> Iterator[tuple[Read, str]]:
    """Each read of an attribute nothing writes, with the warning's text."""
    for read in reads:
        if read.scope == "customer":
            candidates = customer
        elif read.scope == "journey":
            candidates = journey
        else:
            candidates = customer | journey | set(PROFILE_MOMENTS)
        if read.name in candidates:
            continue
        what = "journey attribute" if read.scope == "journey" else "attribute"
        writers = (
            "no set_journey action of this playbook"
            if read.scope == "journey"
            else "no set action, event_attributes entry or documented event"
        )
        message = (
            f"{what} '{read.name}' is read but nothing writes it ({writers})"
            f"{did_you_mean(read.name, candidates)}"
        )
        yield read, message
