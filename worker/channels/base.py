"""The interface every channel adapter implements, and the errors that steer retries."""

from __future__ import annotations

from typing import Protocol

from sopflow.core.state import Delivery


class PermanentDeliveryError(Exception):
    """The remote side refused for good (a 4xx, no endpoint configured): never retry.

    The activity re-raises it as a non-retryable ApplicationError of this type name.
    """


class ChannelAdapter(Protocol):
    async def deliver(self, delivery: Delivery) -> str | None:
        """Deliver once; return a short detail; raise PermanentDeliveryError or retry."""
        ...
