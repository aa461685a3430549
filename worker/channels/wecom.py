"""The WeCom channels: `wecom.private` (1:1 to a customer), `wecom.group` (to a customer
group chat) and `wecom.moments` (a post on a staff member's moments).

A welcome message (the enrolment message of a customer added through WeCom, carrying the
add callback's WelcomeCode) goes out at once through `send_welcome_msg`. Every other
message is queued with the sending staff member's sender workflow, which puts it in the
one task that staff member confirms: a customer's with their owner's other customers, a
group's with the same text for every group its owner owns (chat_type group, one task per
slot), a moments post as a moments task the staff member publishes. The delivery then
awaits confirmation and its outcome reaches the subject's journey later.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError

from sopflow.core.sender import ChatType, QueuedSend, SenderPolicy
from sopflow.core.state import Delivery
from sopflow.language.subjects import bare_id
from sopflow.wecom import api
from sopflow.wecom.errors import WeComError
from worker.channels.base import PermanentDeliveryError, Receipt
from worker.wecom.client import WeComClient
from workflows.sender_contracts import (
    ENQUEUE_SIGNAL,
    SENDER_WORKFLOW_NAME,
    SenderWorkflowInput,
    sender_workflow_id,
)


class WeComPrivateChannel:
    def __init__(
        self, client: WeComClient, temporal: Client, task_queue: str, policy: SenderPolicy
    ) -> None:
        self.client = client
        self.temporal = temporal
        self.task_queue = task_queue
        self.policy = policy

    async def deliver(self, delivery: Delivery) -> Receipt:
        if delivery.welcome_code:
            receipt = await self._welcome(delivery, delivery.welcome_code)
            if receipt is not None:
                return receipt
        if not delivery.sender:
            raise PermanentDeliveryError(
                "no WeCom staff member to send from: the customer has no owner "
                "(customers added through WeCom's callback have one)"
            )
        return await queue_with_sender(
            self.temporal, self.task_queue, self.policy, delivery, delivery.sender, "single"
        )

    async def _welcome(self, delivery: Delivery, code: str) -> Receipt | None:
        """The welcome through send_welcome_msg; None to fall back to an ordinary send."""
        request = api.SendWelcomeMsgRequest(welcome_code=code, text=api.Text(content=delivery.text))
        try:
            answer = await self.client.send_welcome_msg(request)
        except WeComError as e:
            if e.retryable:
                raise  # retried; past the code's 20 seconds WeCom refuses it for good
            if delivery.welcome_fallback == "skip":
                raise PermanentDeliveryError(
                    f"welcome not sent ({e}); the playbook skips it"
                ) from e
            return None
        if answer.already_sent:
            return Receipt("sent", "welcome: WeCom says it was sent already (or they chat)")
        return Receipt("sent", "welcome message")


async def queue_with_sender(
    temporal: Client,
    task_queue: str,
    policy: SenderPolicy,
    delivery: Delivery,
    sender: str,
    chat_type: ChatType,
) -> Receipt:
    """Hand the delivery to `sender`'s sender workflow (started on its first send)."""
    send = QueuedSend(
        idempotency_key=delivery.idempotency_key,
        customer_id=delivery.customer_id,
        text=delivery.text,
        queued_at=datetime.now(UTC),
        chat_type=chat_type,
        visible_to=delivery.visible_to,
        remind_after_seconds=delivery.remind_after_seconds,
    )
    try:
        await temporal.start_workflow(
            SENDER_WORKFLOW_NAME,
            SenderWorkflowInput(sender=sender, policy=policy),
            id=sender_workflow_id(sender),
            task_queue=task_queue,
            start_signal=ENQUEUE_SIGNAL,
            start_signal_args=[send],
        )
    except RPCError as e:
        raise RuntimeError(f"could not queue the send with Temporal: {e}") from e  # retried
    return Receipt("awaiting_confirmation", f"in {sender}'s next WeCom task", sender=sender)


class WeComGroupChannel:
    """A group chat's message: in its owner's next group task, with the same text for
    every group that owner owns (never once per member)."""

    def __init__(
        self, client: WeComClient, temporal: Client, task_queue: str, policy: SenderPolicy
    ) -> None:
        self.client = client
        self.temporal = temporal
        self.task_queue = task_queue
        self.policy = policy

    async def deliver(self, delivery: Delivery) -> Receipt:
        owner = delivery.sender or await self._owner(bare_id(delivery.customer_id))
        return await queue_with_sender(
            self.temporal, self.task_queue, self.policy, delivery, owner, "group"
        )

    async def _owner(self, chat_id: str) -> str:
        """A group created by WeCom's callback knows only its chat id: ask WeCom."""
        try:
            return (await self.client.get_group_chat(chat_id)).owner
        except WeComError as e:
            if e.retryable:
                raise
            raise PermanentDeliveryError(f"no owner to send group {chat_id}'s message: {e}") from e


class WeComMomentsChannel:
    """A post on a staff member's moments: a moments task they publish."""

    def __init__(self, temporal: Client, task_queue: str, policy: SenderPolicy) -> None:
        self.temporal = temporal
        self.task_queue = task_queue
        self.policy = policy

    async def deliver(self, delivery: Delivery) -> Receipt:
        staff = delivery.sender or bare_id(delivery.customer_id)
        return await queue_with_sender(
            self.temporal, self.task_queue, self.policy, delivery, staff, "moment"
        )
