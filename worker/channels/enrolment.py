"""The `enrolment` channel: a group journey enrols the member who joined (`enrol_member`).

The member is a customer with their own workflow, journeys and caps; the group's journey
only asks. The adapter signals (or starts) the member's workflow with an
`enrolment.requested` event that names the playbook, keyed by the delivery's idempotency
key: a retried delivery is one event for the member's core, which drops repeats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio.client import Client

from sopflow.core.deployment import Deployment
from sopflow.core.state import CustomerEvent, Delivery
from sopflow.language.subjects import bare_id
from sopflow.settings import Settings
from worker.channels.base import PermanentDeliveryError
from workflows.client import TemporalUnavailable, signal_with_start
from workflows.contracts import EventSignal

# The API's rule for a customer id (api/models.py): a member id WeCom sent that breaks it
# cannot be a customer's workflow.
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
ENROLMENT_REQUESTED = "enrolment.requested"


class EnrolmentChannel:
    def __init__(
        self, temporal: Client, settings: Settings, deployment: Callable[[], Deployment]
    ) -> None:
        self.temporal = temporal
        self.settings = settings
        self.deployment = deployment

    async def deliver(self, delivery: Delivery) -> str:
        member = delivery.target or ""
        if not CUSTOMER_ID.match(member):
            raise PermanentDeliveryError(f"'{member}' cannot be a customer id: not enrolled")
        event = CustomerEvent(
            customer_id=member,
            type=ENROLMENT_REQUESTED,
            occurred_at=datetime.now(UTC),
            data={"playbook": delivery.text, "chat_id": bare_id(delivery.customer_id)},
            idempotency_key=delivery.idempotency_key,
        )
        signal = EventSignal(event=event, deployment=self.deployment())
        try:
            await signal_with_start(self.temporal, self.settings, signal)
        except TemporalUnavailable as e:
            raise RuntimeError(str(e)) from e  # retried
        return f"{member} asked to enrol in {delivery.text}"
