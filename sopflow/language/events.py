"""The event catalogue: standard events of each audience, and the custom types playbooks
declare."""

from __future__ import annotations

from dataclasses import dataclass

from sopflow.language.plan import Plan, ProfilePlan
from sopflow.language.subjects import Audience

CUSTOMER = frozenset({Audience.CUSTOMER})
GROUP = frozenset({Audience.GROUP})
ANY = frozenset(Audience)


@dataclass(frozen=True)
class EventSpec:
    type: str
    meaning: str
    # The subject acting (resets inactivity); staff actions and system notices do not.
    interaction: bool = True
    # Whose events they are: a group's events go to the group's workflow, never to a
    # customer's, so a playbook of another audience cannot enrol on them.
    audiences: frozenset[Audience] = CUSTOMER


CATALOGUE: tuple[EventSpec, ...] = (
    EventSpec("contact.added", "Added on WeCom. data: channel_code, timezone, attributes"),
    EventSpec("contact.removed", "Deleted the contact or was deleted", interaction=False),
    EventSpec("message.received", "Sent a message in 1:1 or group chat. data: text"),
    EventSpec("moments.liked", "Liked a moments post"),
    EventSpec("moments.commented", "Commented on a moments post. data: text"),
    EventSpec("content.read", "Read an article or case study. data: content_id"),
    EventSpec("link.clicked", "Clicked a link. data: url"),
    EventSpec("form.submitted", "Submitted a form or questionnaire. data: attributes"),
    EventSpec("quiz.completed", "Completed a quiz (a skin test...). data: the answers"),
    EventSpec("appointment.booked", "Booked a store visit or test drive. data: at"),
    EventSpec("visit.completed", "Came to the store"),
    EventSpec("test_drive.completed", "Completed a test drive"),
    EventSpec("deposit.paid", "Paid a deposit. data: amount"),
    EventSpec("order.placed", "Placed an order. data: amount"),
    EventSpec("order.paid", "Paid an order. data: amount, channel"),
    EventSpec("order.refunded", "Was refunded. data: amount"),
    EventSpec("referral.made", "Referred someone. data: referred"),
    EventSpec("referral.converted", "Someone they referred ordered. data: referred"),
    EventSpec("tag.added", "Staff tagged the subject. data: tag", interaction=False, audiences=ANY),
    EventSpec("tag.removed", "Staff removed a tag. data: tag", interaction=False, audiences=ANY),
    EventSpec(
        "profile.updated",
        "The CRM updated the profile. data: attributes, timezone",
        interaction=False,
        audiences=ANY,
    ),
    EventSpec(
        "task.completed",
        "Staff completed a task. data: task_id or task",
        interaction=False,
        audiences=ANY,
    ),
    EventSpec(
        "task.postponed",
        "Staff postponed a task. data: task_id or task, until or by",
        interaction=False,
        audiences=ANY,
    ),
    EventSpec("group.joined", "Joined a customer group. data: chat_id, join_scene"),
    EventSpec("group.left", "Left a customer group. data: chat_id, quit_scene", interaction=False),
    EventSpec(
        "enrolment.requested",
        "A group journey enrolled the customer (enrol_member). data: playbook, chat_id",
        interaction=False,
    ),
    # A group's own events (POST /v1/groups/{chat_id}/events, or WeCom's chat callbacks).
    EventSpec(
        "group.created",
        "The group chat was created. data: owner, name, timezone, attributes",
        interaction=False,
        audiences=GROUP,
    ),
    EventSpec(
        "group.member_joined",
        "A member joined. data: member, member_type (customer or staff), join_scene",
        audiences=GROUP,
    ),
    EventSpec(
        "group.member_left",
        "A member left or was removed. data: member, quit_scene",
        interaction=False,
        audiences=GROUP,
    ),
    EventSpec(
        "group.updated",
        "The owner or name changed. data: owner, name, attributes",
        interaction=False,
        audiences=GROUP,
    ),
    EventSpec(
        "group.dismissed", "The group chat was dismissed", interaction=False, audiences=GROUP
    ),
)
# The moments of a customer that documented events keep (contact.added, order.paid, any
# interaction): `at` triggers and countdowns read them by name like attributes.
PROFILE_MOMENTS = (
    "added_at",
    "last_interaction_at",
    "last_order_at",
    "predicted_next_purchase_at",
    "first_order_at",
)
STANDARD_EVENT_TYPES: dict[str, str] = {spec.type: spec.meaning for spec in CATALOGUE}
NOT_INTERACTIONS = frozenset(spec.type for spec in CATALOGUE if not spec.interaction)


def standard_types(audience: Audience) -> dict[str, str]:
    """The standard events of one audience, with their meaning."""
    return {spec.type: spec.meaning for spec in CATALOGUE if audience in spec.audiences}


def declared_event_types(plans: list[Plan], profile: ProfilePlan | None) -> set[str]:
    """Every event type a deployed playbook or the taxonomy reacts to."""
    found: set[str] = set()
    for plan in plans:
        found |= {t for t in (plan.enrol.event, plan.goal.event if plan.goal else None) if t}
        found |= {rule.event for rule in plan.exit if rule.event}
        found |= {t.event for t in plan.all_triggers() if t.event}
    if profile is not None:
        found |= {rule.event for rule in profile.tag_rules}
    return found
