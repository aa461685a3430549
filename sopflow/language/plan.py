"""Compiled, immutable plans: what the journey core executes.

A plan is self-contained (content inlined, durations in seconds, windows parsed) and
content-addressed: its `version` is a hash of everything that can change behaviour, so a
journey pinned to a version behaves the same for as long as it lives.
"""

from __future__ import annotations

import weakref
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WindowPlan(FrozenModel):
    days: tuple[int, ...]
    start: str
    end: str


class SendStep(FrozenModel):
    kind: Literal["send"] = "send"
    channel: str
    text: str
    content: str | None = None
    window: WindowPlan | None = None
    transactional: bool = False
    # wecom.moments: the customer tags that may see the post (None: every customer).
    visible_to: tuple[str, ...] | None = None


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


class MigrationPlan(FrozenModel):
    from_version: str
    stages: dict[str, str]


class Plan(FrozenModel):
    """One playbook, compiled."""

    name: str
    title: str | None = None
    version: str = Field(description="Content hash: the identity of this behaviour.")
    # Who runs through it (sopflow.language.subjects.Audience); plans compiled before
    # audiences existed are customers' and keep their versions (the hash leaves it out).
    audience: Literal["customer", "group", "staff"] = "customer"
    timezone: str = "Asia/Shanghai"
    entry_stage: str
    enrol: EnrolPlan
    exit: tuple[ExitPlan, ...] = ()
    goal: GoalPlan | None = None
    contact_policy: ContactPolicyPlan = ContactPolicyPlan()
    stages: dict[str, StagePlan]
    migrations: tuple[MigrationPlan, ...] = ()

    @property
    def enrol_event(self) -> str | None:
        return self.enrol.event


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


# One object per plan version in a process. Versions are content hashes and plans are
# frozen, so every customer's workflow in a worker can hold the same object instead of
# its own deserialised copy (thousands of cached customers, a handful of plans).
_SHARED_PLANS: weakref.WeakValueDictionary[str, Plan] = weakref.WeakValueDictionary()
_SHARED_PROFILES: weakref.WeakValueDictionary[str, ProfilePlan] = weakref.WeakValueDictionary()


def shared_plan(plan: Plan) -> Plan:
    return _SHARED_PLANS.setdefault(plan.version, plan)


def shared_profile(profile: ProfilePlan) -> ProfilePlan:
    return _SHARED_PROFILES.setdefault(profile.version, profile)
