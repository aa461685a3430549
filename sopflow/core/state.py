"""Serialisable state of one customer and its journeys, plus what flows in and out of the core.

Everything here crosses the Temporal boundary (signals, continue-as-new, queries), so it is
plain pydantic data with no behaviour beyond small helpers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, Field

from sopflow.language.plan import Branch

M = TypeVar("M", bound=BaseModel)

# Bounds keep one customer's state (and so every continue-as-new payload) small,
# however long the customer lives. The read model keeps the full record.
TIMELINE_LIMIT = 500
SEEN_EVENT_KEYS_LIMIT = 1000
RECENT_ORDERS_LIMIT = 50
EVENT_TYPES_LIMIT = 100
# What a customer's profile may hold, whatever events and playbooks write into it: the
# API refuses bigger events (docs/limits.md), and the core refuses (and records) a tag
# or an attribute that would pass these, so the state stays far under Temporal's 2 MB
# payload limit.
TAG_MAX_CHARS = 128
TAGS_LIMIT = 200
ATTRIBUTES_LIMIT = 200  # keys of the customer's attributes, and of each journey's
ATTRIBUTE_KEY_MAX_CHARS = 100
ATTRIBUTE_VALUE_MAX_BYTES = 8 * 1024  # one value, as JSON
ATTRIBUTES_MAX_BYTES = 64 * 1024  # all of the customer's (or a journey's), as JSON
# An error kept in the timeline (a quarantined input) is cut to this many characters.
ERROR_MAX_CHARS = 500


class CustomerEvent(BaseModel):
    """Something a customer did (or staff did for them), as the API accepted it."""

    customer_id: str
    type: str
    occurred_at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str


class OrderRecord(BaseModel):
    at: datetime
    amount: float


class Profile(BaseModel):
    """What sopflow knows of the customer: the `customer` of guards and templates."""

    timezone: str | None = None
    added_at: datetime | None = None
    last_interaction_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict)
    order_count: int = 0
    total_spent: float = 0.0
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    recent_orders: list[OrderRecord] = Field(default_factory=list)
    average_interval_days: float | None = None
    predicted_next_purchase_at: datetime | None = None
    tier: str | None = None
    lifecycle: str | None = None
    # The customer groups a customer is in (chat ids), from group.joined / group.left.
    groups: list[str] = Field(default_factory=list)

    # When each event type last came (at most EVENT_TYPES_LIMIT types, the most recent):
    # a playbook that says which events count as interaction reads its own inactivity here.
    last_event_at: dict[str, datetime] = Field(default_factory=dict)

    def last_interaction(self, interaction_events: tuple[str, ...] | None) -> datetime | None:
        """The latest interaction: of the catalogue's interaction events (None), or of the
        event types a playbook lists as interaction."""
        if interaction_events is None:
            return self.last_interaction_at
        moments = [self.last_event_at[t] for t in interaction_events if t in self.last_event_at]
        return max(moments) if moments else None

    def remember_event(self, event_type: str, moment: datetime) -> None:
        self.last_event_at.pop(event_type, None)
        self.last_event_at[event_type] = moment
        while len(self.last_event_at) > EVENT_TYPES_LIMIT:
            del self.last_event_at[next(iter(self.last_event_at))]


class Member(BaseModel):
    """One member of a group chat."""

    joined_at: datetime
    customer: bool = True  # else a staff member
    join_scene: int | None = None


class GroupInfo(BaseModel):
    """What sopflow knows of a group chat beyond the profile (tags, attributes, time zone
    and creation time live in the group's Profile, as a customer's do)."""

    owner: str | None = None
    name: str | None = None
    members: dict[str, Member] = Field(default_factory=dict)
    last_joined_at: datetime | None = None
    dismissed_at: datetime | None = None


class TaskState(BaseModel):
    """A staff task created by a journey, until it is completed or escalated."""

    task_id: str
    name: str
    title: str
    assignee: str
    stage: str
    created_at: datetime
    due_at: datetime
    status: Literal["open", "completed", "escalated"] = "open"
    escalate_to: str | None = None
    on_complete: Branch | None = None


class ScheduledSend(BaseModel):
    """A message deferred to a send window or past quiet hours: scheduled, never dropped."""

    due_at: datetime
    stage: str
    channel: str
    text: str
    transactional: bool = False
    visible_to: list[str] | None = None


class JourneyState(BaseModel):
    """One customer's walk through one playbook, pinned to the plan version it started on."""

    journey_id: str
    playbook: str
    version: str
    stage: str
    enrolled_at: datetime
    entered_stage_at: datetime
    status: Literal["active", "ended"] = "active"
    ended_at: datetime | None = None
    end_reason: str | None = None
    goal_reached_at: datetime | None = None
    # Counts effects so each gets a stable idempotency key: journey_id/seq.
    seq: int = 0
    attributes: dict[str, Any] = Field(default_factory=dict)
    counters: dict[str, int] = Field(default_factory=dict)
    # When each time trigger of the current stage visit last fired (key: trigger index).
    fired: dict[str, datetime] = Field(default_factory=dict)
    # Last value of each condition trigger, so a condition fires when it *becomes* true.
    conditions: dict[str, bool] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    scheduled: list[ScheduledSend] = Field(default_factory=list)
    # What countdowns read from the event that enrolled the customer (only those keys).
    enrolment_data: dict[str, Any] = Field(default_factory=dict)
    # The arm of the playbook's experiment (a variant, or `holdout`); None without one.
    variant: str | None = None


TimelineKind = Literal[
    "guard_failed",
    "enrolled",
    "stage_entered",
    "message",
    "deferred",
    "suppressed",
    "send_failed",
    "task_created",
    "task_completed",
    "task_postponed",
    "task_escalated",
    "tag_added",
    "tag_removed",
    "tag_rejected",
    "attribute_set",
    "score_changed",
    "tier_changed",
    "lifecycle_changed",
    "goal_reached",
    "journey_ended",
    "migrated",
    "countdown_branch",
    "member_joined",
    "member_left",
    "member_enrolled",
    "group_updated",
    "attribute_rejected",
    # An event or a timer the core could not process: recorded with its error, skipped,
    # the state kept as it was before it.
    "quarantined",
    # A send of a held-out journey (the experiment's holdout): what would have gone out.
    "held_out",
]
# A message handed to a channel whose delivery goes on after the hand-over: a WeCom mass
# send awaits the staff member's confirmation, then ends in one of the other four, with
# WeCom's reason (the sender workflow reports them: sopflow.core.sender).
ConfirmationStatus = Literal["awaiting_confirmation", "sent", "failed", "cancelled", "expired"]
# `pending` until the channel's activity ends; `delivered` when the hand-over ends it.
DeliveryStatus = Literal["pending", "delivered", ConfirmationStatus]


class TimelineEntry(BaseModel):
    """One thing that happened to the customer, in the order it happened."""

    at: datetime
    kind: TimelineKind
    # Position in the customer's whole timeline: the journey ledger's key, never reused.
    seq: int = 0
    playbook: str | None = None
    stage: str | None = None
    channel: str | None = None
    text: str | None = None
    idempotency_key: str | None = None
    status: DeliveryStatus | None = None
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


# The field names, read once: `Model.model_fields` is a property that costs a microsecond.
_ENTRY_FIELDS = frozenset(TimelineEntry.model_fields)
_ENTRY_DEFAULTS: dict[str, Any] = {
    name: field.default for name, field in TimelineEntry.model_fields.items() if name != "detail"
}


def timeline_entry(**fields: Any) -> TimelineEntry:
    """A TimelineEntry from the core's own typed values, without validating them again
    (a step records several; validation was a tenth of a simulation's time). The detail
    is copied, as validation would: a caller may reuse its dict."""
    return timeline_entry_of(fields)


def timeline_entry_of(fields: dict[str, Any]) -> TimelineEntry:
    """`timeline_entry(**fields)`, for a caller that holds the fields in a dict of its own
    (which it gives up)."""
    if not fields.keys() <= _ENTRY_FIELDS:
        raise TypeError(f"not a timeline field: {sorted(fields.keys() - _ENTRY_FIELDS)}")
    values = {**_ENTRY_DEFAULTS, **fields, "detail": dict(fields.get("detail") or {})}
    return _trusted(TimelineEntry, values, set(fields))


_new = object.__new__
_set_dict = object.__setattr__
# BaseModel's own slots, set through their descriptors (object.__setattr__ looks each
# name up first): a step builds a few dozen models this way.
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _trusted(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """An instance of `cls` holding `values` (every field, already of its type), built as
    pydantic builds a validated one but without validating: for the models the core makes
    many of per step from values it typed itself."""
    model = _new(cls)
    _set_dict(model, "__dict__", values)
    _set_fields(model, fields_set)
    _set_extra(model, None)
    _set_private(model, None)
    return model


class CustomerState(BaseModel):
    """Everything the durable shell carries for one subject across continue-as-new: a
    customer, a group chat (`group/<chat_id>`) or a staff member (`staff/<userid>`)."""

    customer_id: str
    # The latest time the core has acted at: events and timers never run before it.
    clock: datetime | None = None
    profile: Profile = Field(default_factory=Profile)
    journeys: dict[str, JourneyState] = Field(default_factory=dict)
    enrolment_counts: dict[str, int] = Field(default_factory=dict)
    seen_event_keys: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    timeline_seq: int = 0
    # Customer-facing sends of the last week, for the frequency caps across journeys.
    sent_at: list[datetime] = Field(default_factory=list)
    # Guards that could not be evaluated (a missing attribute, a limit): the last error of
    # each, so the timeline says it once per change rather than at every step, and how
    # many evaluations failed in all (metrics).
    guard_errors: dict[str, str] = Field(default_factory=dict)
    guard_failures: int = 0
    # A group chat's owner and members (group subjects only).
    group: GroupInfo | None = None
    # Inputs (events, timers) quarantined so far: recorded in the timeline and skipped.
    quarantined: int = 0


class MigrationOrder(BaseModel):
    """Move this customer's journey of `playbook` from one plan version to another."""

    playbook: str
    from_version: str
    to_version: str
    stages: dict[str, str] = Field(default_factory=dict)


class Delivery(BaseModel):
    """An external effect: a message to a customer or a task for staff."""

    idempotency_key: str
    # "notice": made by the worker, not the core (a task told to its assignee in WeCom).
    kind: Literal["message", "task", "enrolment", "tag", "notice"] = "message"
    customer_id: str
    playbook: str
    journey_id: str
    stage: str
    channel: str
    text: str
    scheduled_at: datetime
    assignee: str | None = None
    script: str | None = None
    due_at: datetime | None = None
    # WeCom: the staff member the message goes out from (the customer's owner), and for a
    # welcome message the add callback's code and what to do when WeCom refuses it.
    sender: str | None = None
    welcome_code: str | None = None
    welcome_fallback: Literal["send", "skip"] = "send"
    # An enrolment (a group journey's `enrol_member`): the customer to enrol; the
    # playbook is the delivery's text.
    target: str | None = None
    # A moments post: the customer tags that see it (None: every customer of the sender).
    visible_to: list[str] | None = None
    # WeCom: remind the staff member of the unconfirmed task after this long (the
    # playbook's `wecom.remind_after`); None: the setting's default.
    remind_after_seconds: int | None = None


_DELIVERY_FIELDS = frozenset(Delivery.model_fields)
_DELIVERY_REQUIRED = frozenset(
    name for name, field in Delivery.model_fields.items() if field.is_required()
)
# Every field in declaration order (a model's dump follows its dict): the required ones
# hold None here until `delivery` puts the given values in their place.
_DELIVERY_DEFAULTS: dict[str, Any] = {
    name: None if field.is_required() else field.default
    for name, field in Delivery.model_fields.items()
}


def delivery(**fields: Any) -> Delivery:
    """A Delivery from the core's own typed values, without validating them again (a step
    makes one per message, task, tag and enrolment). `visible_to` is copied, as
    validation would: the caller may keep its list."""
    if not _DELIVERY_REQUIRED <= fields.keys() <= _DELIVERY_FIELDS:
        raise TypeError(f"not a delivery: {sorted(fields)}")
    values = {**_DELIVERY_DEFAULTS, **fields}
    if values["visible_to"] is not None:
        values["visible_to"] = list(values["visible_to"])
    return _trusted(Delivery, values, set(fields))


class StepResult(BaseModel):
    """The new state and the effects the shell must perform, in order."""

    state: CustomerState
    deliveries: list[Delivery] = Field(default_factory=list)


def customer_event(
    customer_id: str, type: str, occurred_at: datetime, data: dict[str, Any], key: str
) -> CustomerEvent:
    """CustomerEvent(...) without validating values that are already of their types (the
    simulator makes one per event per simulated customer); anything else is validated as
    usual. The data is copied, as validation would."""
    if (
        type.__class__ is str
        and customer_id.__class__ is str
        and key.__class__ is str
        and data.__class__ is dict
        and all(name.__class__ is str for name in data)
        and occurred_at.__class__ is datetime
        and occurred_at.utcoffset() is not None
    ):
        values = {
            "customer_id": customer_id,
            "type": type,
            "occurred_at": occurred_at,
            "data": dict(data),
            "idempotency_key": key,
        }
        return _trusted(CustomerEvent, values, set(values))
    return CustomerEvent(
        customer_id=customer_id,
        type=type,
        occurred_at=occurred_at,
        data=data,
        idempotency_key=key,
    )


def step_result(state: CustomerState, deliveries: list[Delivery]) -> StepResult:
    """StepResult(state=state, deliveries=deliveries) without validating the core's own
    models again (every step returns one)."""
    return _trusted(
        StepResult, {"state": state, "deliveries": list(deliveries)}, {"state", "deliveries"}
    )


def checkpoint(state: CustomerState) -> CustomerState:
    """A copy of `state` to go back to if a step fails midway.

    A step changes models, dicts and lists in place, so each of those is copied; what a
    step only appends to or replaces (the timeline and its entries, seen keys, instants,
    orders, deferred sends, attribute values) is shared, so a checkpoint of a long
    timeline costs a list copy, not a model copy per entry: about 30 microseconds, against
    more than half a millisecond for a deep copy. Timeline entries change only between
    steps (a delivery's outcome), which a restore must keep anyway.
    tests/test_quarantine.py walks a checkpoint to prove that it shares nothing else, so a
    new field cannot slip past it.
    """
    profile = state.profile
    return _copied(
        state,
        {
            "profile": _copied(
                profile,
                {
                    "tags": list(profile.tags),
                    "attributes": dict(profile.attributes),
                    "scores": dict(profile.scores),
                    "recent_orders": list(profile.recent_orders),
                    "groups": list(profile.groups),
                    "last_event_at": dict(profile.last_event_at),
                },
            ),
            "journeys": {name: _journey_copy(j) for name, j in state.journeys.items()},
            "enrolment_counts": dict(state.enrolment_counts),
            "seen_event_keys": list(state.seen_event_keys),
            "timeline": list(state.timeline),
            "sent_at": list(state.sent_at),
            "guard_errors": dict(state.guard_errors),
            "group": state.group.model_copy(deep=True) if state.group is not None else None,
        },
    )


def _journey_copy(journey: JourneyState) -> JourneyState:
    return _copied(
        journey,
        {
            "attributes": dict(journey.attributes),
            "counters": dict(journey.counters),
            "fired": dict(journey.fired),
            "conditions": dict(journey.conditions),
            # A completed task never changes again (a later completion or postponement
            # of it is ignored), so the checkpoint shares it: most of a long journey's
            # tasks are done, and they were most of a checkpoint's copies.
            "tasks": {
                key: task if task.status == "completed" else _copied(task, {})
                for key, task in journey.tasks.items()
            },
            "scheduled": list(journey.scheduled),
            "enrolment_data": dict(journey.enrolment_data),
        },
    )


def _copied(model: M, update: dict[str, Any]) -> M:
    """`model.model_copy(update=update)` without pydantic's general path (extra fields,
    private attributes: these models have neither), which took half of a checkpoint's time;
    a step checkpoints before every event and every timer it fires."""
    fields = model.__dict__.copy()
    fields.update(update)
    return _trusted(type(model), fields, model.__pydantic_fields_set__ | update.keys())
