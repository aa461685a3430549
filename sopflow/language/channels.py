"""The channel registry: every channel a delivery can take, declared once.

The language reads it (which channels a `send` may name), the core (which channels count
against contact caps and keep quiet hours), the workflow shell (which deliveries run as
local activities) and the worker (which adapter serves each channel; the worker refuses
to start with a channel it has no adapter for).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sopflow.language.subjects import Audience


class Channel(StrEnum):
    """Where a message goes: the deliveries log, the brand's webhook, or WeCom."""

    LOG = "log"
    WEBHOOK = "webhook"
    WECOM_PRIVATE = "wecom.private"
    WECOM_GROUP = "wecom.group"
    WECOM_MOMENTS = "wecom.moments"


# Staff tasks are deliveries too, created by `task` actions only.
TASK_CHANNEL = "task"
# A group journey enrolling a member who joined (`enrol_member`): an event for the
# customer's own workflow, created by that action only.
ENROLMENT_CHANNEL = "enrolment"
# A customer playbook's `tag` action, tagged in WeCom for the customer's owner
# (`mark_tag`); the delivery's text is the tag with TAG_ADD or TAG_REMOVE before it.
WECOM_TAG_CHANNEL = "wecom.tag"
TAG_ADD, TAG_REMOVE = "+", "-"
EVERY_AUDIENCE = frozenset(Audience)


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
    # The audiences whose playbooks may send on it: a group message sent from 300
    # customers' journeys would reach the group 300 times.
    audiences: frozenset[Audience] = EVERY_AUDIENCE


REGISTRY: tuple[ChannelSpec, ...] = (
    ChannelSpec(Channel.LOG, "appends the message to the deliveries log", True, local=True),
    ChannelSpec(Channel.WEBHOOK, "POSTs the delivery to the brand's endpoint", False, local=False),
    ChannelSpec(
        Channel.WECOM_PRIVATE,
        "a 1:1 WeCom message to the customer",
        True,
        local=True,
        audiences=frozenset({Audience.CUSTOMER}),
    ),
    ChannelSpec(
        Channel.WECOM_GROUP,
        "one WeCom message to the group chat, in its owner's mass-send task",
        True,
        local=True,
        audiences=frozenset({Audience.GROUP}),
    ),
    ChannelSpec(
        Channel.WECOM_MOMENTS,
        "a post on the staff member's moments (add_moment_task)",
        True,
        local=True,
        audiences=frozenset({Audience.STAFF}),
    ),
    ChannelSpec(TASK_CHANNEL, "a staff task in the tasks table", False, local=True),
    ChannelSpec(
        WECOM_TAG_CHANNEL,
        "tags the customer in WeCom for their owner (mark_tag)",
        False,
        # A call to WeCom: a remote lane of its own, retried without holding back others.
        local=False,
        audiences=frozenset({Audience.CUSTOMER}),
    ),
    ChannelSpec(
        ENROLMENT_CHANNEL,
        "asks a member's own workflow to enrol them in a customer playbook",
        False,
        # A signal to another workflow, a burst of them when a group fills: ordinary
        # activities, which never hold the group's workflow task.
        local=False,
        audiences=frozenset({Audience.GROUP}),
    ),
)
CHANNELS: dict[str, ChannelSpec] = {str(spec.name): spec for spec in REGISTRY}
LOCAL_CHANNELS = frozenset(name for name, spec in CHANNELS.items() if spec.local)
CUSTOMER_CHANNELS = frozenset(name for name, spec in CHANNELS.items() if spec.reaches_customer)


def channels_for(audience: Audience) -> list[str]:
    """The channels a playbook of this audience may name in a `send`."""
    return [str(c) for c in Channel if audience in CHANNELS[c].audiences]
