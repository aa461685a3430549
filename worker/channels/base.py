"""The interface every channel adapter implements, and the errors that steer retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sopflow.core.state import Delivery


class PermanentDeliveryError(Exception):
    """The remote side refused for good (a 4xx, no endpoint configured): never retry.

    The activity re-raises it as a non-retryable ApplicationError of this type name.
    """


@dataclass(frozen=True)
class Receipt:
    """What a channel knows when its part ends, for channels whose delivery has states
    after the hand-over (a WeCom mass send awaits the staff member's confirmation)."""

    status: str
    detail: str | None = None
    # The WeCom staff member whose confirmation it awaits (their sender workflow).
    sender: str | None = None


class ChannelAdapter(Protocol):
    async def deliver(self, delivery: Delivery) -> str | Receipt | None:
        """Deliver once; return a short detail (delivered) or a Receipt with the state;
        raise PermanentDeliveryError for a refusal, anything else to be retried."""
        ...
