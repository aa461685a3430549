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
# tags than this publishes the first ones (sorted); the read model has them all.
MAX_PUBLISHED_TAGS = 100


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


class DeliveryBatch(BaseModel):
    deliveries: list[Delivery]


class DeliveryBatchOutcome(BaseModel):
    outcomes: list[DeliveryOutcome]
