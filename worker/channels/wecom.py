"""The `wecom.private` channel: a 1:1 message to a customer through WeCom.

A welcome message (the enrolment message of a customer added through WeCom, carrying the
add callback's WelcomeCode) goes out at once through `send_welcome_msg`. Every other
message is queued with the staff member's sender workflow, which puts it in the one
mass-send task that staff member confirms; the delivery then awaits confirmation and its
outcome reaches the customer's journey later.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError

from sopflow.core.sender import QueuedSend, SenderPolicy
from sopflow.core.state import Delivery
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
        send = QueuedSend(
            idempotency_key=delivery.idempotency_key,
            customer_id=delivery.customer_id,
            text=delivery.text,
            queued_at=datetime.now(UTC),
        )
        try:
            await self.temporal.start_workflow(
                SENDER_WORKFLOW_NAME,
                SenderWorkflowInput(sender=delivery.sender, policy=self.policy),
                id=sender_workflow_id(delivery.sender),
                task_queue=self.task_queue,
                start_signal=ENQUEUE_SIGNAL,
                start_signal_args=[send],
            )
        except RPCError as e:
            raise RuntimeError(f"could not queue the send with Temporal: {e}") from e  # retried
        return Receipt("awaiting_confirmation", f"in {delivery.sender}'s next WeCom task")

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
