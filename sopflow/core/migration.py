"""Explicit migration of an in-flight journey to a newer plan version (pure).

A journey never changes version by itself (invariant 3); `sopflow migrate` sends an order
and the workflow applies it between steps. The customer keeps their place: the stage is
mapped, the time it was entered kept, and time triggers that would already have fired in
the new stage are treated as fired, so nothing is sent twice or late.
"""

from __future__ import annotations

from datetime import datetime

from sopflow.core.experiments import assign
from sopflow.core.state import CustomerState, MigrationOrder, StepResult
from sopflow.core.step import Catalog, Step
from sopflow.core.triggers import next_due


def apply_migration(
    state: CustomerState, order: MigrationOrder, catalog: Catalog, now: datetime
) -> StepResult:
    step = Step(state.model_copy(deep=True), catalog, now)
    journey = step.state.journeys.get(order.playbook)
    if journey is None or journey.status != "active" or journey.version != order.from_version:
        return step.result()  # ended, or already moved: nothing to do
    plan = catalog.plans.get(order.to_version)
    target = order.stages.get(journey.stage, journey.stage)
    if plan is None or target not in plan.stages:
        step.record(
            "migrated",
            journey,
            error="no such stage in the new version",
            detail={
                "from": order.from_version,
                "to": order.to_version,
                "stage": journey.stage,
                "target": target,
                "applied": False,
            },
        )
        return step.result()
    source_stage = journey.stage
    journey.version = order.to_version
    assigned = journey.variant is None and plan.experiment is not None
    if assigned and plan.experiment is not None:
        # Into an experiment: the arm the hash gives, as if enrolled in this version.
        journey.variant = assign(plan.experiment, step.customer_id)
    journey.stage = target
    journey.conditions = {}
    journey.fired = {}
    tz = step.timezone(plan)
    for key, trigger in plan.active_triggers(target):
        due = next_due(trigger, key, journey, step.state.profile, tz, plan.interaction_events)
        if due is not None and due <= now:
            journey.fired[key] = now  # its moment passed under the old version
    step.record(
        "migrated",
        journey,
        detail={
            "from": order.from_version,
            "to": order.to_version,
            "from_stage": source_stage,
            "to_stage": target,
            "applied": True,
            **({"variant": journey.variant} if assigned else {}),
        },
    )
    return step.result()
