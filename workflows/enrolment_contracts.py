"""Typed edges of the enrolment batch workflow: enrol (or broadcast to) every customer of
an audience in a playbook, page by page."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# The event each customer's workflow receives: its core enrols the customer under the
# playbook's own re-entry rules and enrolment guard.
from sopflow.core.journey import ENROLMENT_REQUESTED

__all__ = ["ENROLMENT_REQUESTED"]

BATCH_WORKFLOW_NAME = "EnrolmentBatchWorkflow"
PROGRESS_QUERY = "progress"
AUDIENCE_PAGE_ACTIVITY = "audience_page"
ENROL_CUSTOMERS_ACTIVITY = "enrol_customers"
# Customers signalled per activity (one heartbeat each; a retry repeats at most these).
SIGNAL_CHUNK = 100
# A run continues as new after this many pages, so a batch of any size keeps a bounded
# history (a page of 1,000 customers is about 25 events).
PAGES_PER_RUN = 20

BatchStatus = Literal["running", "completed", "cancelled", "failed"]


def batch_workflow_id(batch_id: str) -> str:
    return f"enrolment/{batch_id}"


def enrolment_key(batch_id: str, customer_id: str) -> str:
    """The idempotency key of a customer's enrolment by a batch: a batch run twice, or
    resumed after a crash, sends each customer at most one event."""
    return f"enrol/{batch_id}/{customer_id}"


class BatchProgress(BaseModel):
    batch_id: str
    audience: str
    playbook: str
    status: BatchStatus = "running"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pages: int = 0
    scanned: int = Field(default=0, description="Customers of the read model looked at.")
    matched: int = Field(default=0, description="Customers in the audience.")
    done: int = Field(default=0, description="Customers sent the enrolment.")
    skipped: int = Field(
        default=0,
        description="Already in the playbook, or already sent the enrolment by this batch.",
    )
    failed: int = Field(default=0, description="Customers Temporal did not accept a signal for.")
    unevaluated: int = Field(
        default=0, description="Customers the audience's expression failed on (not members)."
    )
    error: str | None = None


class BatchInput(BaseModel):
    progress: BatchProgress
    rate_per_second: float
    page_size: int
    # Where the next page starts (the last customer id read); None: the beginning.
    after: str | None = None
    pages_per_run: int = PAGES_PER_RUN


class AudiencePageInput(BaseModel):
    audience: str
    playbook: str
    after: str | None
    limit: int


class AudiencePage(BaseModel):
    customer_ids: list[str] = Field(default_factory=list)
    scanned: int = 0
    next_after: str | None = None
    # Members whose profile shows an active journey in the playbook already.
    already_enrolled: int = 0
    unevaluated: int = 0
    # The audience is not (or no longer) defined: the batch fails with this.
    error: str | None = None


class EnrolCustomersInput(BaseModel):
    batch_id: str
    playbook: str
    customer_ids: list[str]


class EnrolCustomersResult(BaseModel):
    done: int = 0
    skipped: int = 0
    failed: int = 0
