"""The channel registry: every channel a delivery can take, declared once.

The language reads it (which channels a `send` may name), the core (which channels count
against contact caps and keep quiet hours), the workflow shell (which deliveries run as
local activities) and the worker (which adapter serves each channel; the worker refuses
to start with a channel it has no adapter for).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Channel(StrEnum):
    """Where a message goes: the deliveries log, the brand's webhook, or WeCom."""

    LOG = "log"
    WEBHOOK = "webhook"
    WECOM_PRIVATE = "wecom.private"
    WECOM_GROUP = "wecom.group"
    WECOM_MOMENTS = "wecom.moments"


# Staff tasks are deliveries too, created by `task` actions only.
TASK_CHANNEL = "task"


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    meaning: str
    # Reaches the customer: counts against the contact caps and waits out quiet hours.
    # A webhook tells the brand's own systems; a staff task tells staff.
    reaches_customer: bool
    # Its adapter writes on the worker's machine (a file, the read model): the delivery
    # runs as a local activity. A channel that becomes remote must change this behind a
    # new `workflow.patched` in the shell, or recorded histories stop replaying.
    local: bool


REGISTRY: tuple[ChannelSpec, ...] = (
    ChannelSpec(Channel.LOG, "appends the message to the deliveries log", True, local=True),
    ChannelSpec(Channel.WEBHOOK, "POSTs the delivery to the brand's endpoint", False, local=False),
    ChannelSpec(Channel.WECOM_PRIVATE, "a 1:1 WeCom message to the customer", True, local=True),
    ChannelSpec(Channel.WECOM_GROUP, "a WeCom customer-group message", True, local=True),
    ChannelSpec(Channel.WECOM_MOMENTS, "a WeCom moments post", True, local=True),
    ChannelSpec(TASK_CHANNEL, "a staff task in the tasks table", False, local=True),
)
CHANNELS: dict[str, ChannelSpec] = {str(spec.name): spec for spec in REGISTRY}
LOCAL_CHANNELS = frozenset(name for name, spec in CHANNELS.items() if spec.local)
CUSTOMER_CHANNELS = frozenset(name for name, spec in CHANNELS.items() if spec.reaches_customer)
