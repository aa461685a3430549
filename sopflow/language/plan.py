"""Compiled, immutable plans: what the journey core executes.

A plan is self-contained (content inlined, durations in seconds, windows parsed) and
content-addressed: its `version` is a hash of everything that can change behaviour, so a
journey pinned to a version behaves the same for as long as it lives.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _HashedWhenSet:
    """Marks a field added after plans were first versioned: `content_hash` leaves it out
    while it holds its default, so a playbook that does not use the feature keeps the
    version (and the journeys pinned to it) it had before the field existed."""

    def __repr__(self) -> str:
        return "HASHED_WHEN_SET"


HASHED_WHEN_SET = _HashedWhenSet()


class WindowPlan(FrozenModel):
    days: tuple[int, ...]
    start: str
    end: str


class SendStep(FrozenModel):
    kind: Literal["send"] = "send"
    channel: str
    text: str
    content: str | None = None
    # One range (the shape of every plan before language v1.1), or several: the next
    # range to open wins.
    window: WindowPlan | tuple[WindowPlan, ...] | None = None
    transactional: bool = False
    # Exempt from quiet hours (never from the caps).
    urgent: Annotated[bool, HASHED_WHEN_SET] = False
    # WeCom's welcome message: sent at once with the add callback's welcome code; when
    # there is none or WeCom refuses it, `send` it as an ordinary message or `skip` it.
    welcome: Annotated[bool, HASHED_WHEN_SET] = False
    welcome_fallback: Annotated[Literal["send", "skip"], HASHED_WHEN_SET] = "send"
    # wecom.moments: the customer tags that may see the post (None: every customer).
    visible_to: Annotated[tuple[str, ...] | None, HASHED_WHEN_SET] = None

    @property
    def windows(self) -> tuple[WindowPlan, ...]:
        """The send window's ranges; empty: any time."""
        if self.window is None:
            return ()
        return self.window if isinstance(self.window, tuple) else (self.window,)


class Branch(FrozenModel):
    actions: tuple[ActionStep, ...] = ()
    goto: str | None = None


class TaskStep(FrozenModel):
    kind: Literal["task"] = "task"
    id: str
    title: str
    assignee: str
    script: str | None = None
    due_seconds: int
    escalate_to: str | None = None
    on_complete: Branch | None = None


class TagStep(FrozenModel):
    kind: Literal["tag"] = "tag"
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class SetStep(FrozenModel):
    kind: Literal["set"] = "set"
    scope: Literal["customer", "journey"]
    values: dict[str, Any]


class ScoreStep(FrozenModel):
    kind: Literal["score"] = "score"
    deltas: dict[str, float]


class GotoStep(FrozenModel):
    kind: Literal["goto"] = "goto"
    stage: str


class EnrolStep(FrozenModel):
    kind: Literal["enrol"] = "enrol"
    playbook: str


class EndStep(FrozenModel):
    kind: Literal["end"] = "end"
    reason: str | None = None


class EnrolMemberStep(FrozenModel):
    """A group journey enrols the member who just joined in a customer playbook."""

    kind: Literal["enrol_member"] = "enrol_member"
    playbook: str


ActionStep = Annotated[
    SendStep
    | TaskStep
    | TagStep
    | SetStep
    | ScoreStep
    | GotoStep
    | EnrolStep
    | EndStep
    | EnrolMemberStep,
    Field(discriminator="kind"),
]

TriggerKind = Literal[
    "event", "after", "at", "day", "every", "cron", "inactivity", "condition", "countdown", "wait"
]


class AtPlan(FrozenModel):
    attribute: str
    offset_seconds: int = 0
    time: str | None = None
    yearly: bool = False


class CountdownPlan(FrozenModel):
    deadline_attribute: str | None = None
    deadline_after_seconds: int | None = None
    offsets_seconds: tuple[int, ...]
    # The deadline is this key of the data of the event that enrolled the customer.
    deadline_event_key: Annotated[str | None, HASHED_WHEN_SET] = None
    # Taken on entering the stage when the deadline is missing, or already past.
    on_missing: Annotated[Branch | None, HASHED_WHEN_SET] = None
    on_past: Annotated[Branch | None, HASHED_WHEN_SET] = None


class TriggerPlan(FrozenModel):
    kind: TriggerKind
    event: str | None = None
    when: str | None = None
    after_seconds: int | None = None
    at: AtPlan | None = None
    day: int | None = None
    time: str | None = None
    every_seconds: int | None = None
    cron: str | None = None
    inactive_seconds: int | None = None
    condition: str | None = None
    countdown: CountdownPlan | None = None
    timeout_seconds: int | None = None
    on_timeout: Branch | None = None
    actions: tuple[ActionStep, ...] = ()
    goto: str | None = None


class StagePlan(FrozenModel):
    description: str | None = None
    on_enter: tuple[ActionStep, ...] = ()
    triggers: tuple[TriggerPlan, ...] = ()
    end: bool = False


class EnrolPlan(FrozenModel):
    event: str | None = None
    when: str | None = None
    reentry: Literal["never", "cooldown", "always"] = "never"
    cooldown_seconds: int | None = None


class ExitPlan(FrozenModel):
    event: str | None = None
    when: str | None = None


class GoalPlan(FrozenModel):
    event: str
    when: str | None = None
    exit: bool = False


class ContactPolicyPlan(FrozenModel):
    quiet_hours: WindowPlan | None = None
    max_per_day: int | None = None
    max_per_week: int | None = None


class VariantPlan(FrozenModel):
    name: str
    weight: float


class ExperimentPlan(FrozenModel):
    """Variants with weights and a holdout share; each subject's arm is a hash of `id`
    and the subject's id (sopflow.core.experiments)."""

    id: str
    variants: tuple[VariantPlan, ...] = ()
    holdout: float = 0.0


class WeComPolicyPlan(FrozenModel):
    """How the playbook's WeCom mass sends are followed up (the `wecom` block)."""

    # Remind the staff member of an unconfirmed task after this long; None: the setting.
    remind_after_seconds: int | None = None
    # The journey left the stage before the staff member confirmed: cancel the send.
    cancel_on_leave: bool = True


class MigrationPlan(FrozenModel):
    from_version: str
    stages: dict[str, str]


# The key prefix of playbook-wide triggers (in a journey's `fired` and `conditions`): they
# belong to the journey, so entering a stage does not reset them.
EVERYWHERE = "*"


class Plan(FrozenModel):
    """One playbook, compiled."""

    name: str
    title: str | None = None
    version: str = Field(description="Content hash: the identity of this behaviour.")
    # Who runs through it (sopflow.language.subjects.Audience); plans compiled before
    # audiences existed are customers' and keep their versions (the hash leaves it out).
    audience: Annotated[Literal["customer", "group", "staff"], HASHED_WHEN_SET] = "customer"
    timezone: str = "Asia/Shanghai"
    entry_stage: str
    enrol: EnrolPlan
    exit: tuple[ExitPlan, ...] = ()
    goal: GoalPlan | None = None
    contact_policy: ContactPolicyPlan = ContactPolicyPlan()
    stages: dict[str, StagePlan]
    migrations: tuple[MigrationPlan, ...] = ()
    # Playbook-wide triggers: active in every stage, timed from the journey's start.
    triggers: Annotated[tuple[TriggerPlan, ...], HASHED_WHEN_SET] = ()
    # The event types that count as interaction for this playbook (`inactive_for`,
    # `journey.days_inactive`); None: the event catalogue's interaction flag.
    interaction_events: Annotated[tuple[str, ...] | None, HASHED_WHEN_SET] = None
    # A split into variants and a holdout (language v1.2); None: no experiment.
    experiment: Annotated[ExperimentPlan | None, HASHED_WHEN_SET] = None
    wecom: Annotated[WeComPolicyPlan, HASHED_WHEN_SET] = WeComPolicyPlan()

    @property
    def enrol_event(self) -> str | None:
        return self.enrol.event

    def active_triggers(self, stage: str) -> tuple[tuple[str, TriggerPlan], ...]:
        """The triggers active in a stage with their keys: the stage's own ("0", "1", ...)
        first, then the playbook-wide ones ("*0", "*1", ...)."""
        return _stage_triggers(self, stage)[0]

    def timed_triggers(self, stage: str) -> tuple[tuple[str, TriggerPlan], ...]:
        """`active_triggers(stage)` that can come due with no event: all but the event
        and condition triggers, in the same order."""
        return _stage_triggers(self, stage)[1]

    def condition_triggers(self, stage: str) -> tuple[tuple[str, TriggerPlan], ...]:
        """`active_triggers(stage)` that are condition triggers with a condition, in the
        same order (looked at after every step)."""
        return _stage_triggers(self, stage)[2]

    def guarded_events(self) -> frozenset[str]:
        """The event types for which some guard of the playbook is read when they come: an
        exit rule's, the goal's, an event or wait trigger's (of any stage)."""
        found = _GUARDED_EVENTS.get(id(self))
        if found is None:
            rules = [(r.event, r.when) for r in self.exit]
            if self.goal is not None:
                rules.append((self.goal.event, self.goal.when))
            rules += [(t.event, t.when) for t in self.all_triggers() if t.kind in ("event", "wait")]
            found = frozenset(event for event, when in rules if event and when)
            _GUARDED_EVENTS[id(self)] = found
            weakref.finalize(self, _GUARDED_EVENTS.pop, id(self), None)
        return found

    def trigger(self, stage: str, key: str) -> TriggerPlan:
        """The trigger of `active_triggers(stage)` with this key."""
        if key.startswith(EVERYWHERE):
            return self.triggers[int(key.removeprefix(EVERYWHERE))]
        return self.stages[stage].triggers[int(key)]

    def all_triggers(self) -> list[TriggerPlan]:
        return [t for stage in self.stages.values() for t in stage.triggers] + list(self.triggers)

    def all_steps(self) -> Iterator[ActionStep]:
        """Every action of the plan, nested ones (branches, task completions) included."""

        def nested(steps: tuple[ActionStep, ...]) -> Iterator[ActionStep]:
            for step in steps:
                yield step
                if isinstance(step, TaskStep) and step.on_complete is not None:
                    yield from nested(step.on_complete.actions)

        for stage in self.stages.values():
            yield from nested(stage.on_enter)
        for trigger in self.all_triggers():
            yield from nested(trigger.actions)
            branches = [trigger.on_timeout]
            if trigger.countdown is not None:
                branches += [trigger.countdown.on_missing, trigger.countdown.on_past]
            for branch in branches:
                if branch is not None:
                    yield from nested(branch.actions)

    def enrolment_data_keys(self) -> frozenset[str]:
        """The keys of the enrolling event's data that countdowns read as deadlines: a
        journey keeps these (and only these) when it starts."""
        return frozenset(
            t.countdown.deadline_event_key
            for t in self.all_triggers()
            if t.countdown is not None and t.countdown.deadline_event_key is not None
        )


class TagGroupPlan(FrozenModel):
    category: str
    multi: bool
    source: str
    values: tuple[str, ...]


class TagRulePlan(FrozenModel):
    group: str
    event: str
    when: str | None = None
    tag: str


class TierRulePlan(FrozenModel):
    min_orders: int | None = None
    min_spent: float | None = None
    ordered_within_seconds: int | None = None
    active_within_seconds: int | None = None
    inactive_for_seconds: int | None = None
    min_lifetime_orders: int | None = None


class TierLevelPlan(FrozenModel):
    name: str
    rule: TierRulePlan | None = None


class TiersPlan(FrozenModel):
    period_seconds: int
    value: tuple[TierLevelPlan, ...]
    lifecycle: tuple[TierLevelPlan, ...]


class ProfilePlan(FrozenModel):
    """The deployment-wide profile rules: tag taxonomy (event-driven tags) and tiers."""

    version: str
    groups: dict[str, TagGroupPlan] = Field(default_factory=dict)
    tag_rules: tuple[TagRulePlan, ...] = ()
    tiers: TiersPlan | None = None


Branch.model_rebuild()

# Triggers without a time: the core never asks them when they are due.
UNTIMED_KINDS = frozenset({"event", "condition"})
Keyed = tuple[tuple[str, TriggerPlan], ...]
# A stage's active triggers, its timed ones, and its condition triggers (with a condition).
StageTriggers = tuple[Keyed, Keyed, Keyed]
# A stage's (active, timed) triggers, per live plan object: the core asks after every event
# and timer, and a plan never changes. Keyed by id, dropped when the plan is collected.
_STAGE_TRIGGERS: dict[int, dict[str, StageTriggers]] = {}
# `Plan.guarded_events`, per live plan object, the same way.
_GUARDED_EVENTS: dict[int, frozenset[str]] = {}


def _stage_triggers(plan: Plan, stage: str) -> StageTriggers:
    per_stage = _STAGE_TRIGGERS.get(id(plan))
    if per_stage is None:
        per_stage = _STAGE_TRIGGERS[id(plan)] = {}
        weakref.finalize(plan, _STAGE_TRIGGERS.pop, id(plan), None)
    found = per_stage.get(stage)
    if found is None:
        own = [(str(i), t) for i, t in enumerate(plan.stages[stage].triggers)]
        active = (*own, *((f"{EVERYWHERE}{i}", t) for i, t in enumerate(plan.triggers)))
        timed = tuple((k, t) for k, t in active if t.kind not in UNTIMED_KINDS)
        conditions = tuple((k, t) for k, t in active if t.kind == "condition" and t.condition)
        found = per_stage[stage] = (active, timed, conditions)
    return found


# One object per plan version in a process. Versions are content hashes and plans are
# frozen, so every customer's workflow in a worker can hold the same object instead of
# its own deserialised copy (thousands of cached customers, a handful of plans).
_SHARED_PLANS: weakref.WeakValueDictionary[str, Plan] = weakref.WeakValueDictionary()
_SHARED_PROFILES: weakref.WeakValueDictionary[str, ProfilePlan] = weakref.WeakValueDictionary()


def shared_plan(plan: Plan) -> Plan:
    return _SHARED_PLANS.setdefault(plan.version, plan)


def shared_profile(profile: ProfilePlan) -> ProfilePlan:
    return _SHARED_PROFILES.setdefault(profile.version, profile)
