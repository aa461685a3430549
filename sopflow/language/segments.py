"""Audiences: named segments of customers, to enrol or broadcast to in one batch.

An `Audience` document names a CEL expression over what is known of each customer
without a journey or an event at hand: the guard context's `customer`, `journeys` (the
stage of each active journey, by playbook) and `now` (sopflow.language.context declares
them). The modules say "segment" because `audience` already names who a playbook runs
for (sopflow.language.subjects).
"""

from __future__ import annotations

from sopflow.language.guards import MACRO_VARIABLE, check_guard, compile_guard
from sopflow.language.plan import FrozenModel

# What a segment's expression may read: the customer's names without a journey or event.
SEGMENT_ROOTS = frozenset({"customer", "journeys", "now"})


class SegmentPlan(FrozenModel):
    """A deployed audience: its name, title and expression."""

    name: str
    title: str | None = None
    when: str


def check_segment(when: str) -> str | None:
    """Why the expression cannot select customers, or None when it type-checks."""
    problem = check_guard(when, with_event=False)
    if problem:
        return problem
    # check_guard accepted every name of a customer's guards; of those, a segment has no
    # journey and no event (a macro's own variable, `t` of `exists(t, ...)`, is neither).
    bound = set(MACRO_VARIABLE.findall(when))
    unknown = sorted(set(compile_guard(when).variables()) - SEGMENT_ROOTS - bound)
    if unknown:
        return (
            f"an audience reads only {', '.join(sorted(SEGMENT_ROOTS))}: "
            f"'{unknown[0]}' is not known outside a journey"
        )
    return None
