"""Typed edges of the customer workflow: its input, signals, query result and activities."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from sopflow.core.deployment import Deployment
from sopflow.core.state import (
    CustomerEvent,
    CustomerState,
    Delivery,
    GroupInfo,
    JourneyState,
    MigrationOrder,
    Profile,
    TimelineEntry,
)
from sopflow.language.channels import LOCAL_CHANNELS
from sopflow.language.plan import Plan, ProfilePlan
from sopflow.language.subjects import Audience, audience_of

WORKFLOW_NAME = "CustomerJourneyWorkflow"
EVENT_SIGNAL = "event"
MIGRATE_SIGNAL = "migrate"
DESCRIBE_QUERY = "describe"
DELIVER_ACTIVITY = "deliver_message"
LOAD_PLANS_ACTIVITY = "load_plans"
RECORD_TIMELINE_ACTIVITY = "record_timeline"
LOCAL_DELIVERIES_PATCH = "local-deliveries"
LOCAL_PLAN_LOADING_PATCH = "local-plan-loading"
DELIVER_BATCH_ACTIVITY = "deliver_messages"
BATCHED_LOCAL_DELIVERIES_PATCH = "batched-local-deliveries"
# One ordered outbox per delivery lane (below) instead of one per customer; events and
# timers go on while a continue-as-new waits for the outboxes to drain.
PER_CHANNEL_OUTBOXES_PATCH = "per-channel-outboxes"
# A customer playbook's tag actions also tag the customer in WeCom (`wecom.tag`).
WECOM_TAGS_PATCH = "wecom-tags"
# WeCom sends' later states (the sender workflow's DELIVERY_OUTCOME_SIGNAL) move their
# timeline entries, and a journey that leaves the stage cancels its unconfirmed sends
# (a signal to the sender workflow: a command the histories before it do not have).
DELIVERY_STATES_PATCH = "wecom-delivery-states"
LOCAL_LANE = "local"
# A step that sends several local messages (a batch of events, an on_enter with three
# sends) delivers them in one local activity, up to this many at a time.
MAX_DELIVERY_BATCH = 50
STAGES_SEARCH_ATTRIBUTE = "SopflowStages"
VERSIONS_SEARCH_ATTRIBUTE = "SopflowVersions"
TAGS_SEARCH_ATTRIBUTE = "SopflowTags"
TIER_SEARCH_ATTRIBUTE = "SopflowTier"
LIFECYCLE_SEARCH_ATTRIBUTE = "SopflowLifecycle"
# Name -> type, as `temporal server start-dev --search-attribute` and `temporal operator
# search-attribute create` take them. The dev server's SQL visibility allows at most 3
# KeywordList and 10 Keyword attributes (measured with CLI 1.9.1): all three lists are used.
SEARCH_ATTRIBUTES = {
    STAGES_SEARCH_ATTRIBUTE: "KeywordList",  # "<playbook>:<stage>" of active journeys
    VERSIONS_SEARCH_ATTRIBUTE: "KeywordList",  # "<playbook>@<plan version>" of active journeys
    TAGS_SEARCH_ATTRIBUTE: "KeywordList",  # the customer's tags
    TIER_SEARCH_ATTRIBUTE: "Keyword",
    LIFECYCLE_SEARCH_ATTRIBUTE: "Keyword",
}
# Visibility is for finding customers, not a copy of the profile: a customer with more
# tags than this publishes the first ones (sorted), as many as fit the server's size limit
# (workflows/visibility.py); the read model has them all.
MAX_PUBLISHED_TAGS = 100
# The state carried across continue-as-new is compacted (the oldest timeline entries the
# journey ledger already holds are dropped) to stay under this, far below Temporal's
# 2 MB payload limit.
CARRIED_STATE_MAX_BYTES = 512 * 1024
# Plans carried too (the rest are loaded again), and deliveries still waiting when a
# continue-as-new is forced (the rest are recorded failed): the whole input stays far
# under the 2 MB limit.
CARRIED_PLANS_MAX_BYTES = 768 * 1024
CARRIED_OUTBOX_MAX_BYTES = 256 * 1024


def delivery_lane(channel: str) -> str:
    """The outbox a delivery waits in: the local channels share one (their deliveries are
    quick writes on the worker, batched together); each remote channel has its own, so a
    webhook retrying for hours holds back only later webhooks, never a WeCom message or a
    staff task."""
    return LOCAL_LANE if channel in LOCAL_CHANNELS else channel


def customer_workflow_id(customer_id: str) -> str:
    """One workflow per customer: `customer/<customer_id>`."""
    return f"customer/{customer_id}"


def subject_workflow_id(subject_id: str) -> str:
    """One workflow per subject: `customer/<id>` for a customer; a group's and a staff
    member's subject id is their workflow id (`group/<chat_id>`, `staff/<userid>`)."""
    if audience_of(subject_id) == Audience.CUSTOMER:
        return customer_workflow_id(subject_id)
    return subject_id


class EventSignal(BaseModel):
    """Events of one customer, in order, plus the deployment current when accepted.

    `event` is the one-event form (and what histories recorded before batches hold);
    `events` carries a batch, so that many events of a customer cost one signal.
    """

    event: CustomerEvent | None = None
    events: list[CustomerEvent] = Field(default_factory=list)
    deployment: Deployment = Field(default_factory=Deployment)

    def all_events(self) -> list[CustomerEvent]:
        return ([self.event] if self.event else []) + self.events


class MigrationSignal(BaseModel):
    """An order from `sopflow migrate`, with the deployment that holds the new version."""

    order: MigrationOrder
    deployment: Deployment = Field(default_factory=Deployment)


class WorkflowOptions(BaseModel):
    # Far below Temporal's 51,200-event hard limit and its 4,096-event suggestion, so the
    # history stays bounded even when the server's suggestion is not available.
    continue_as_new_after_events: int = 2000
    # A continue-as-new waits for the outboxes to drain (a delivery in flight would be
    # abandoned), processing events meanwhile; past this many history events it goes
    # anyway, carrying what is undelivered (sent again under the same idempotency keys),
    # far below the 51,200 events at which Temporal terminates a workflow.
    force_continue_as_new_after_events: int = 10_000
    publish_search_attributes: bool = True


class CustomerWorkflowInput(BaseModel):
    """Start input, and the carried-over state on continue-as-new."""

    customer_id: str
    state: CustomerState | None = None
    plans: dict[str, Plan] = Field(default_factory=dict)
    profiles: dict[str, ProfilePlan] = Field(default_factory=dict)
    deployment: Deployment = Field(default_factory=Deployment)
    inbox: list[EventSignal] = Field(default_factory=list)
    migrations: list[MigrationSignal] = Field(default_factory=list)
    # The journey ledger holds every timeline entry up to this sequence number.
    recorded_seq: int = 0
    # Deliveries not yet delivered when a continue-as-new was forced, in order.
    outbox: list[Delivery] = Field(default_factory=list)
    options: WorkflowOptions = Field(default_factory=WorkflowOptions)


class CustomerView(BaseModel):
    """What the API shows of a subject (a customer, a group, a staff member): journeys
    and the timeline of actions."""

    customer_id: str
    profile: Profile
    journeys: list[JourneyState]
    timeline: list[TimelineEntry]
    next_due_at: datetime | None = None
    group: GroupInfo | None = Field(default=None, description="A group's owner and members.")
    quarantined: int = Field(
        default=0, description="Events and timers that could not be processed (skipped)."
    )


class LoadPlansInput(BaseModel):
    versions: list[str] = Field(default_factory=list)
    profile_versions: list[str] = Field(default_factory=list)


class LoadPlansResult(BaseModel):
    plans: list[Plan] = Field(default_factory=list)
    profiles: list[ProfilePlan] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


class RecordTimelineInput(BaseModel):
    customer_id: str
    entries: list[TimelineEntry]


class DeliveryOutcome(BaseModel):
    idempotency_key: str
    delivered: bool
    detail: str | None = None
    # A state after the hand-over (`awaiting_confirmation` for a WeCom mass send); None
    # when the channel's part ends in delivery.
    status: str | None = None
    # The WeCom staff member whose confirmation it awaits.
    sender: str | None = None


class DeliveryBatch(BaseModel):
    deliveries: list[Delivery]


class DeliveryBatchOutcome(BaseModel):
    outcomes: list[DeliveryOutcome]
