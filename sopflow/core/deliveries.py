"""What became of the customer's messages after the core decided them: the state of each
message or task in the timeline, and the WeCom sends to cancel when a journey moved on.

A delivery's state only moves forward: `pending` until its activity ends; then
`delivered` (the hand-over ends it: a log line, a webhook, a task) or, for a WeCom mass
send, `awaiting_confirmation` until the staff member confirms; then one final state,
`sent`, `failed`, `cancelled` or `expired`, with WeCom's reason. A late or repeated
report (a retried activity, a signal that overtook the activity's result) never moves a
state back, and a report for a message the timeline no longer holds changes nothing:
both are ignored, the same way on every replay.
"""

from __future__ import annotations

from dataclasses import dataclass

from sopflow.core.state import CustomerState, DeliveryStatus, TimelineEntry
from sopflow.core.step import Catalog
from sopflow.language.channels import Channel

# How far along each state is; a report moves an entry only to a later rank.
RANK: dict[str, int] = {
    "pending": 0,
    "delivered": 1,
    "awaiting_confirmation": 1,
    "sent": 2,
    "failed": 2,
    "cancelled": 2,
    "expired": 2,
}
# The states a delivery ends in; of them, those whose detail is the reason the message
# did not reach the customer.
FINAL = tuple(status for status, rank in RANK.items() if rank == max(RANK.values()))
UNDELIVERED = ("failed", "cancelled", "expired")
# The sends a journey cancels on leaving the stage: a customer's 1:1 messages. A group's
# message and a staff member's moments post wait for their confirmation or expiry (a
# countdown's earlier post stays up when its plan moves on).
CANCELLED_ON_LEAVE = frozenset({Channel.WECOM_PRIVATE.value})


def as_status(text: str | None) -> DeliveryStatus | None:
    """A channel's state by name (None for one the timeline does not know)."""
    for status in RANK:
        if status == text:
            return status  # type: ignore[return-value]  # a key of RANK is a status
    return None


@dataclass(frozen=True)
class SendCancel:
    """Ask `sender`'s sender workflow to cancel the send with this key."""

    idempotency_key: str
    sender: str


def record_delivery_outcome(
    state: CustomerState,
    idempotency_key: str,
    delivered: bool,
    error: str | None = None,
    *,
    status: DeliveryStatus | None = None,
    sender: str | None = None,
    owned: bool = False,
) -> CustomerState:
    """Mark a message or task in the timeline as its activity ended: delivered or failed,
    or the state the channel handed it over in (`status`: awaiting_confirmation, with the
    WeCom staff member it waits for, `sender`).

    `owned=True` hands the state over (the caller drops it): it is updated in place rather
    than copied, which matters for a long timeline."""
    updated = state if owned else state.model_copy(deep=True)
    entry = _entry(updated, idempotency_key)
    if entry is None:
        return updated
    new: DeliveryStatus = status or ("delivered" if delivered else "failed")
    if _moves(entry, new):
        entry.status = new
        entry.error = None if delivered else error
        if sender is not None:
            entry.detail = {**entry.detail, "sender": sender}
        if delivered and error and new == "awaiting_confirmation":
            entry.detail = {**entry.detail, "delivery": error}
    return updated


def record_send_outcome(
    state: CustomerState,
    idempotency_key: str,
    status: DeliveryStatus,
    detail: str | None = None,
    *,
    owned: bool = False,
) -> tuple[CustomerState, bool]:
    """A WeCom send's later state, as the staff member's sender workflow reports it:
    `awaiting_confirmation` once it is in a task, then `sent`, `failed`, `cancelled` or
    `expired` with WeCom's reason (`detail`). Returns the state and whether the entry
    moved: an unknown key, a late or a repeated report changes nothing."""
    updated = state if owned else state.model_copy(deep=True)
    entry = _entry(updated, idempotency_key)
    if entry is None or not _moves(entry, status):
        return updated, False
    entry.status = status
    if status in UNDELIVERED:
        entry.error = detail
    else:
        entry.error = None
        if detail:
            entry.detail = {**entry.detail, "delivery": detail}
    return updated, True


def request_cancels(
    state: CustomerState, catalog: Catalog, *, owned: bool = False
) -> tuple[CustomerState, list[SendCancel]]:
    """The customer's WeCom messages still awaiting the staff member's confirmation whose
    journey has since left the stage they were sent in (or ended), when the playbook
    cancels on leaving (`wecom.cancel_on_leave`, the default). Each is marked
    `cancel_requested` so that it is asked once; its outcome (`cancelled`, or what WeCom
    reports when the task also holds other customers) comes back from the sender
    workflow."""
    updated = state if owned else state.model_copy(deep=True)
    cancels = []
    for entry in updated.timeline:
        if entry.status != "awaiting_confirmation" or "cancel_requested" in entry.detail:
            continue
        if entry.channel not in CANCELLED_ON_LEAVE:
            continue
        sender = entry.detail.get("sender")
        if not isinstance(sender, str) or not entry.idempotency_key:
            continue  # handed over before senders were recorded: left to expire
        if not _left_stage(updated, entry) or not _cancels_on_leave(updated, catalog, entry):
            continue
        entry.detail = {**entry.detail, "cancel_requested": True}
        cancels.append(SendCancel(entry.idempotency_key, sender))
    return updated, cancels


def _entry(state: CustomerState, idempotency_key: str) -> TimelineEntry | None:
    for entry in reversed(state.timeline):
        if entry.idempotency_key == idempotency_key:
            return entry
    return None


def _moves(entry: TimelineEntry, status: str) -> bool:
    current = RANK.get(entry.status, -1) if entry.status is not None else -1
    return RANK[status] > current


def _left_stage(state: CustomerState, entry: TimelineEntry) -> bool:
    """Has the journey that sent this message left the stage it was in once the send's
    step was over? A send and a `goto` (or an `end`) in one step is the stage's parting
    message, never cancelled by that move: only a move at a later instant counts."""
    journey = state.journeys.get(entry.playbook or "")
    if journey is None:
        return True
    if not (entry.idempotency_key or "").startswith(f"{state.customer_id}/{journey.journey_id}/"):
        return journey.enrolled_at > entry.at  # enrolled again since: the old one ended
    if journey.status != "active":
        return journey.ended_at is not None and journey.ended_at > entry.at
    return journey.entered_stage_at > entry.at


def _cancels_on_leave(state: CustomerState, catalog: Catalog, entry: TimelineEntry) -> bool:
    journey = state.journeys.get(entry.playbook or "")
    plan = catalog.plans.get(journey.version) if journey is not None else None
    if plan is None:
        plan = catalog.deployed_plan(entry.playbook or "")
    return plan.wecom.cancel_on_leave if plan is not None else True
