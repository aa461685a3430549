"""One staff member's WeCom mass sends: batching subjects into tasks, following them up.

WeCom sends to customers only through a task that the staff member confirms in the WeCom
client (`add_msg_template`). Customers who get the same text from the same staff member
within a short window share one task, so the staff member confirms once for 300
customers. This module is the pure state machine of that staff member's sends; the
durable shell (`workflows/sender_workflow.py`) feeds it queued sends, WeCom's answers and
the clock, and performs what it decides through activities.

Three kinds of task go through it, told apart by `chat_type`: `single` (customers, by
external user id), `group` (customer group chats the staff member owns: the same text for
all of an owner's groups in one task, chat_type group) and `moment` (a post on the staff
member's own moments, `add_moment_task`, which they publish). A send names its subject
(`customer_id`: a customer, `group/<chat_id>`, `staff/<userid>`), and its outcome goes
back to that subject's workflow.

Each send ends in exactly one outcome: `sent`, `failed`, `cancelled` or `expired` (after
`awaiting_confirmation` while the task waits for the staff member). For a moment, sent
means published.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from sopflow.core.state import ConfirmationStatus

OutcomeStatus = ConfirmationStatus
ChatType = Literal["single", "group", "moment"]
# Keys remembered to drop a repeated enqueue (an activity retried after it signalled).
SEEN_KEYS_LIMIT = 20_000


class SenderPolicy(BaseModel):
    """How a staff member's mass sends are batched and followed up (settings)."""

    batch_window_seconds: int = 60
    max_customers_per_task: int = 10_000
    max_groups_per_task: int = 2_000  # WeCom's limit for chat_type group (doc 92135)
    poll_seconds: int = 300
    remind_after_seconds: int | None = 4 * 3600
    max_reminders: int = 3
    expire_after_seconds: int = 72 * 3600


class QueuedSend(BaseModel):
    """A subject's message handed to the staff member's sender."""

    idempotency_key: str
    customer_id: str  # the subject: a customer, group/<chat_id> or staff/<userid>
    text: str
    queued_at: datetime
    chat_type: ChatType = "single"
    visible_to: list[str] | None = None  # a moment's customer tags
    # The playbook's `wecom.remind_after`; None: the policy's.
    remind_after_seconds: int | None = None


class Outcome(BaseModel):
    """What became of one queued send, for the subject's journey."""

    idempotency_key: str
    customer_id: str
    status: OutcomeStatus
    detail: str | None = None
    batch_id: str | None = None  # the task it was in, once it was in one


class Batch(BaseModel):
    """Sends of one text collecting until the window closes; then one WeCom task."""

    batch_id: str
    text: str
    opened_at: datetime
    sends: list[QueuedSend] = Field(default_factory=list)
    chat_type: ChatType = "single"
    visible_to: list[str] | None = None

    @property
    def remind_after_seconds(self) -> int | None:
        """The soonest reminder any of its playbooks asks for (None: the policy's)."""
        asked = [s.remind_after_seconds for s in self.sends if s.remind_after_seconds]
        return min(asked) if asked else None


class OpenTask(BaseModel):
    """A task created in WeCom, until every customer in it has an outcome."""

    batch_id: str
    msgid: str
    text: str
    created_at: datetime
    # customer id -> the idempotency keys of their sends in this task, while awaiting an
    # outcome (two journeys sending one customer the same text: WeCom sends it once)
    awaiting: dict[str, list[str]] = Field(default_factory=dict)
    reminded_at: list[datetime] = Field(default_factory=list)
    next_poll_at: datetime
    cancel_requested: list[str] = Field(default_factory=list)
    chat_type: ChatType = "single"
    remind_after_seconds: int | None = None  # None: the policy's


class SenderState(BaseModel):
    sender: str
    batches: dict[str, Batch] = Field(default_factory=dict)  # by content key
    tasks: dict[str, OpenTask] = Field(default_factory=dict)  # by batch id
    # Keys of recent sends, oldest first (a dict: an ordered set that serialises).
    seen_keys: dict[str, bool] = Field(default_factory=dict)
    batches_closed: int = 0


def content_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def batch_key(chat_type: ChatType, text: str, visible_to: list[str] | None = None) -> str:
    """Sends that share a task: the same text (a customer's single sends keep the key
    they always had), to the same kind of target, seen by the same tags."""
    if chat_type == "single":
        return content_key(text)
    tags = ",".join(sorted(visible_to)) if visible_to is not None else "*"
    return content_key(f"{chat_type}\x00{tags}\x00{text}")


def task_capacity(chat_type: ChatType, policy: SenderPolicy) -> int:
    """Targets one WeCom task may hold: customers, groups, or the one staff member."""
    match chat_type:
        case "group":
            return policy.max_groups_per_task
        case "moment":
            return 1
    return policy.max_customers_per_task


def enqueue(
    state: SenderState, send: QueuedSend, now: datetime, policy: SenderPolicy | None = None
) -> bool:
    """Add a send to the open batch of its text; False when the key was seen already. A
    batch that holds as many subjects as one WeCom task may is set aside (it closes at the
    next step) and the send opens a new one."""
    if send.idempotency_key in state.seen_keys:
        return False
    state.seen_keys[send.idempotency_key] = True
    while len(state.seen_keys) > SEEN_KEYS_LIMIT:
        del state.seen_keys[next(iter(state.seen_keys))]
    key = batch_key(send.chat_type, send.text, send.visible_to)
    batch = state.batches.get(key)
    if batch is not None and policy is not None:
        subjects = {s.customer_id for s in batch.sends}
        full = len(subjects) >= task_capacity(batch.chat_type, policy)
        if full and send.customer_id not in subjects:
            state.batches[f"{key}/{batch.batch_id}"] = batch  # closes as it is
            del state.batches[key]
            batch = None
    if batch is None:
        # The batch id names the sender, the text and when it opened: the same on every
        # replay and retry, so creating its WeCom task can be made idempotent.
        batch_id = f"{state.sender}/{key}/{now.strftime('%Y%m%dT%H%M%S.%f')}"
        if any(b.batch_id == batch_id for b in state.batches.values()):
            batch_id += f"/{state.batches_closed + len(state.batches)}"
        batch = state.batches[key] = Batch(
            batch_id=batch_id,
            text=send.text,
            opened_at=now,
            chat_type=send.chat_type,
            visible_to=send.visible_to,
        )
    batch.sends.append(send)
    return True


def due_batches(state: SenderState, policy: SenderPolicy, now: datetime) -> list[Batch]:
    """Batches whose window has closed, or that are full, oldest first."""
    window = timedelta(seconds=policy.batch_window_seconds)
    ready = [
        b
        for b in state.batches.values()
        if b.opened_at + window <= now
        or len({s.customer_id for s in b.sends}) >= task_capacity(b.chat_type, policy)
    ]
    return sorted(ready, key=lambda b: (b.opened_at, b.batch_id))


def close_batch(
    state: SenderState,
    batch: Batch,
    msgid: str,
    refused: dict[str, str],
    policy: SenderPolicy,
    now: datetime,
) -> list[Outcome]:
    """The batch's task exists (msgid) or could not be created (no msgid): the outcomes so
    far. `refused` maps customer ids WeCom or sopflow would not target to the reason."""
    for key in [k for k, b in state.batches.items() if b.batch_id == batch.batch_id]:
        del state.batches[key]
    state.batches_closed += 1
    outcomes = []
    awaiting: dict[str, list[str]] = {}
    for send in batch.sends:
        if send.customer_id in refused or not msgid:
            reason = refused.get(send.customer_id, "WeCom did not create the task")
            outcomes.append(_outcome(send, "failed", reason, batch.batch_id))
        else:
            awaiting.setdefault(send.customer_id, []).append(send.idempotency_key)
            outcomes.append(
                _outcome(send, "awaiting_confirmation", f"WeCom task {msgid}", batch.batch_id)
            )
    if msgid and awaiting:
        state.tasks[batch.batch_id] = OpenTask(
            batch_id=batch.batch_id,
            msgid=msgid,
            text=batch.text,
            created_at=now,
            awaiting=awaiting,
            next_poll_at=now + timedelta(seconds=policy.poll_seconds),
            chat_type=batch.chat_type,
            remind_after_seconds=batch.remind_after_seconds,
        )
    return outcomes


def _outcome(
    send: QueuedSend, status: OutcomeStatus, detail: str | None, batch_id: str | None = None
) -> Outcome:
    return Outcome(
        idempotency_key=send.idempotency_key,
        customer_id=send.customer_id,
        status=status,
        detail=detail,
        batch_id=batch_id,
    )


def cancel(state: SenderState, idempotency_key: str) -> tuple[list[Outcome], list[OpenTask]]:
    """A journey left the stage before the staff member confirmed: drop the send from a
    batch still collecting (cancelled at once), or ask to cancel it in its task. WeCom
    cancels a whole task, never one customer of it: the task is cancelled once every
    customer still awaiting in it asked; the tasks to cancel now are returned."""
    for key, batch in list(state.batches.items()):
        for send in batch.sends:
            if send.idempotency_key == idempotency_key:
                batch.sends.remove(send)
                if not batch.sends:
                    del state.batches[key]
                return [_outcome(send, "cancelled", "left the stage before the task")], []
    for task in state.tasks.values():
        keys = {k for customer_keys in task.awaiting.values() for k in customer_keys}
        if idempotency_key in keys:
            if idempotency_key not in task.cancel_requested:
                task.cancel_requested.append(idempotency_key)
            return [], [task] if keys <= set(task.cancel_requested) else []
    return [], []


def resolve_task(
    task: OpenTask,
    statuses: dict[str, OutcomeStatus],
    details: dict[str, str],
    state: SenderState,
) -> list[Outcome]:
    """Apply WeCom's per-customer results; customers with a final status leave the task,
    and a task with nobody awaiting is done."""
    outcomes = []
    for customer_id, status in statuses.items():
        keys = task.awaiting.get(customer_id)
        if keys is None or status == "awaiting_confirmation":
            continue
        del task.awaiting[customer_id]
        detail = details.get(customer_id)
        outcomes += [
            Outcome(
                idempotency_key=k,
                customer_id=customer_id,
                status=status,
                detail=detail,
                batch_id=task.batch_id,
            )
            for k in keys
        ]
    if not task.awaiting:
        state.tasks.pop(task.batch_id, None)
    return outcomes


def end_task(
    task: OpenTask, status: OutcomeStatus, detail: str, state: SenderState
) -> list[Outcome]:
    """Every customer still awaiting gets `status` (cancelled or expired)."""
    outcomes = [
        Outcome(
            idempotency_key=key,
            customer_id=customer_id,
            status=status,
            detail=detail,
            batch_id=task.batch_id,
        )
        for customer_id, keys in sorted(task.awaiting.items())
        for key in keys
    ]
    task.awaiting.clear()
    state.tasks.pop(task.batch_id, None)
    return outcomes


def next_reminder_at(task: OpenTask, policy: SenderPolicy) -> datetime | None:
    """Remind the staff member `remind_after_seconds` after the task (or the last
    reminder), at most `max_reminders` times in 24 hours (WeCom's own limit is 3). A
    moment not published by then gets one reminder: a task for the staff member. The
    task's own delay (its playbooks' `wecom.remind_after`) wins over the policy's."""
    remind_after = task.remind_after_seconds or policy.remind_after_seconds
    if remind_after is None or policy.max_reminders <= 0:
        return None
    if task.chat_type == "moment" and task.reminded_at:
        return None
    last = task.reminded_at[-1] if task.reminded_at else task.created_at
    at = last + timedelta(seconds=remind_after)
    window = task.reminded_at[-policy.max_reminders :]
    if len(window) == policy.max_reminders:
        # The oldest of the last `max_reminders` must leave the 24 hours first.
        at = max(at, window[0] + timedelta(hours=24))
    return at


def expired(task: OpenTask, policy: SenderPolicy, now: datetime) -> bool:
    return now >= task.created_at + timedelta(seconds=policy.expire_after_seconds)


def next_due_at(state: SenderState, policy: SenderPolicy) -> datetime | None:
    """The earliest moment something is due: a batch closing, a poll, a reminder, an expiry."""
    moments: list[datetime] = [
        b.opened_at + timedelta(seconds=policy.batch_window_seconds) for b in state.batches.values()
    ]
    for task in state.tasks.values():
        moments.append(task.next_poll_at)
        moments.append(task.created_at + timedelta(seconds=policy.expire_after_seconds))
        reminder = next_reminder_at(task, policy)
        if reminder is not None:
            moments.append(reminder)
    return min(moments) if moments else None


CustomerLimit = Literal["days_in_month", "week", "day", "none"]


def limit_window(rule: CustomerLimit, now: datetime) -> tuple[datetime, int] | None:
    """The corp's per-customer mass-message limit as (period start, messages allowed), in
    the zone of `now`: as many a month as the month has days, 7 a (natural) week, or 1 a
    day. None when the corp set no limit."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    match rule:
        case "days_in_month":
            start = day.replace(day=1)
            following = (start + timedelta(days=32)).replace(day=1)
            return start, (following - start).days
        case "week":
            return day - timedelta(days=day.weekday()), 7
        case "day":
            return day, 1
    return None
