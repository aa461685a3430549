"""Typed edges of the WeCom sender workflow (one per staff member) and of the outcomes it
reports back to customers' workflows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from sopflow.core.sender import (
    ChatType,
    Outcome,
    OutcomeStatus,
    QueuedSend,
    SenderPolicy,
    SenderState,
)

SENDER_WORKFLOW_NAME = "WeComSenderWorkflow"
ENQUEUE_SIGNAL = "enqueue"
CANCEL_SEND_SIGNAL = "cancel_send"
DESCRIBE_SENDER_QUERY = "describe"
# The customer workflow's signal for what became of a message after its activity ended.
DELIVERY_OUTCOME_SIGNAL = "delivery_outcome"

CREATE_MASS_SEND_ACTIVITY = "wecom_create_mass_send"
FETCH_SEND_RESULTS_ACTIVITY = "wecom_fetch_send_results"
REMIND_ACTIVITY = "wecom_remind"
CANCEL_TASK_ACTIVITY = "wecom_cancel_task"
REPORT_OUTCOMES_ACTIVITY = "report_delivery_outcomes"


def sender_workflow_id(sender: str) -> str:
    """One workflow per staff member who sends: `wecom-sender/<userid>`."""
    return f"wecom-sender/{sender}"


class SenderWorkflowInput(BaseModel):
    sender: str
    policy: SenderPolicy = Field(default_factory=SenderPolicy)
    state: SenderState | None = None
    inbox: list[QueuedSend] = Field(default_factory=list)
    cancels: list[str] = Field(default_factory=list)


class CreateMassSendInput(BaseModel):
    batch_id: str
    sender: str
    text: str
    customers: list[str]  # the subjects: customers, group/<chat_id>, or staff/<sender>
    chat_type: ChatType = "single"
    visible_to: list[str] | None = None  # a moment's customer tags (`group:value`)


class CreateMassSendResult(BaseModel):
    msgid: str = ""  # empty: no task was created (every customer is in `refused`)
    refused: dict[str, str] = Field(default_factory=dict)


class TaskRef(BaseModel):
    msgid: str  # a moment's: the add_moment_task job id
    sender: str
    batch_id: str
    chat_type: ChatType = "single"


class SendResults(BaseModel):
    confirmed: bool
    statuses: dict[str, OutcomeStatus] = Field(default_factory=dict)  # by subject
    details: dict[str, str] = Field(default_factory=dict)


class OutcomeReport(BaseModel):
    outcomes: list[Outcome]


class DeliveryOutcomeSignal(BaseModel):
    """Sent to a customer's workflow: the messages of theirs whose state changed."""

    outcomes: list[Outcome]
