"""The event catalogue: standard customer events, and the custom types playbooks declare."""

from __future__ import annotations

from sopflow.language.plan import Plan, ProfilePlan

STANDARD_EVENT_TYPES: dict[str, str] = {
    "contact.added": "Added on WeCom. data: channel_code, timezone, attributes",
    "contact.removed": "Deleted the contact or was deleted",
    "message.received": "Sent a message in 1:1 or group chat. data: text",
    "moments.liked": "Liked a moments post",
    "moments.commented": "Commented on a moments post. data: text",
    "content.read": "Read an article or case study. data: content_id",
    "link.clicked": "Clicked a link. data: url",
    "form.submitted": "Submitted a form or questionnaire. data: attributes",
    "quiz.completed": "Completed a quiz (a skin test...). data: the answers",
    "appointment.booked": "Booked a store visit or test drive. data: at",
    "visit.completed": "Came to the store",
    "test_drive.completed": "Completed a test drive",
    "deposit.paid": "Paid a deposit. data: amount",
    "order.placed": "Placed an order. data: amount",
    "order.paid": "Paid an order. data: amount, channel",
    "order.refunded": "Was refunded. data: amount",
    "referral.made": "Referred someone. data: referred",
    "referral.converted": "Someone they referred ordered. data: referred",
    "tag.added": "Staff tagged the customer. data: tag",
    "tag.removed": "Staff removed a tag. data: tag",
    "profile.updated": "The CRM updated the profile. data: attributes, timezone",
    "task.completed": "Staff completed a task. data: task_id or task",
    "task.postponed": "Staff postponed a task. data: task_id or task, until or by",
}


def declared_event_types(plans: list[Plan], profile: ProfilePlan | None) -> set[str]:
    """Every event type a deployed playbook or the taxonomy reacts to."""
    found: set[str] = set()
    for plan in plans:
        found |= {t for t in (plan.enrol.event, plan.goal.event if plan.goal else None) if t}
        found |= {rule.event for rule in plan.exit if rule.event}
        for stage in plan.stages.values():
            found |= {t.event for t in stage.triggers if t.event}
    if profile is not None:
        found |= {rule.event for rule in profile.tag_rules}
    return found
