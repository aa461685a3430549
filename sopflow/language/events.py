"""The event catalogue: standard customer events, and the custom types playbooks declare."""

from __future__ import annotations

from dataclasses import dataclass

from sopflow.language.plan import Plan, ProfilePlan


@dataclass(frozen=True)
class EventSpec:
    type: str
    meaning: str
    # The customer acting (resets inactivity); staff actions and system notices do not.
    interaction: bool = True


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
    EventSpec("tag.added", "Staff tagged the customer. data: tag", interaction=False),
    EventSpec("tag.removed", "Staff removed a tag. data: tag", interaction=False),
    EventSpec(
        "profile.updated",
        "The CRM updated the profile. data: attributes, timezone",
        interaction=False,
    ),
    EventSpec("task.completed", "Staff completed a task. data: task_id or task", interaction=False),
    EventSpec(
        "task.postponed",
        "Staff postponed a task. data: task_id or task, until or by",
        interaction=False,
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
