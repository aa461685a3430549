"""Serialisable state of one customer and its journeys, plus what flows in and out of the core.

Everything here crosses the Temporal boundary (signals, continue-as-new, queries), so it is
plain pydantic data with no behaviour beyond small helpers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

# Bounds keep one customer's state (and so every continue-as-new payload) small,
# however long the customer lives. The read model keeps the full record.
TIMELINE_LIMIT = 500
SEEN_EVENT_KEYS_LIMIT = 1000


class CustomerEvent(BaseModel):
    """Something a customer did, as the API accepted it."""

    customer_id: str
    type: str
    occurred_at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str


class Timer(BaseModel):
    """A due time owned by one trigger of one stage visit; timers are data, never sleeps."""

    due_at: datetime
    stage: str
    trigger_index: int


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
    # Counts effects so each gets a stable idempotency key: journey_id/seq.
    seq: int = 0
    timers: list[Timer] = Field(default_factory=list)


TimelineKind = Literal["enrolled", "stage_entered", "message", "journey_ended"]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class TimelineEntry(BaseModel):
    """One thing that happened to the customer, in the order it happened."""

    at: datetime
    kind: TimelineKind
    playbook: str
    stage: str
    channel: str | None = None
    text: str | None = None
    idempotency_key: str | None = None
    status: DeliveryStatus | None = None
    error: str | None = None


class CustomerState(BaseModel):
    """Everything the durable shell carries for one customer across continue-as-new."""

    customer_id: str
    journeys: dict[str, JourneyState] = Field(default_factory=dict)
    enrolment_counts: dict[str, int] = Field(default_factory=dict)
    seen_event_keys: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class Delivery(BaseModel):
    """A message to deliver: the one external effect of the skeleton's core."""

    idempotency_key: str
    customer_id: str
    playbook: str
    journey_id: str
    stage: str
    channel: str
    text: str
    scheduled_at: datetime


class StepResult(BaseModel):
    """The new state and the effects the shell must perform, in order."""

    state: CustomerState
    deliveries: list[Delivery] = Field(default_factory=list)
