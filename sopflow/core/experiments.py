"""Experiments: which arm of a playbook's split a subject is in.

The arm is a pure function of the experiment's id and the subject's id: the same customer
gets the same arm in every version of the playbook, after a migration, on re-entry, in
the simulator and in the durable runtime, and nothing needs storing to keep it so (the
journey records it anyway, for the timeline, the profile and the guards).

Two independent hashes decide it: the first whether the subject is held out, the second
which variant, so changing the holdout share never reshuffles the variants of those who
stay in, and the other way round.
"""

from __future__ import annotations

import hashlib

from sopflow.language.models import HOLDOUT
from sopflow.language.plan import ExperimentPlan

__all__ = ["HOLDOUT", "assign", "unit"]


def unit(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts: the first 8 bytes of their SHA-256."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: ExperimentPlan, subject_id: str) -> str:
    """The subject's arm: `holdout`, a variant's name, or '' for an experiment that is a
    holdout alone (no variants) when the subject is not held out."""
    if experiment.holdout > 0 and unit(experiment.id, "holdout", subject_id) < experiment.holdout:
        return HOLDOUT
    total = sum(v.weight for v in experiment.variants)
    if total <= 0:
        return ""
    point = unit(experiment.id, "variant", subject_id) * total
    for variant in experiment.variants:
        point -= variant.weight
        if point < 0:
            return variant.name
    return experiment.variants[-1].name  # rounding at the very top of the range
