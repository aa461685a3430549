"""What a group chat's own events teach its state: owner, name, members.

A group is a subject like a customer (`group/<chat_id>`), run by the same journey core;
this module is the part of "learning from an event" that only groups have. Members who
join or leave are recorded in the group's timeline, so the read model lists a group's
members from the journey ledger and can tell which message they joined after.
"""

from __future__ import annotations

from typing import Any

from sopflow.core.actions import end_journey
from sopflow.core.state import CustomerEvent, GroupInfo, Member
from sopflow.core.step import Step, active_journeys

DISMISSED_REASON = "the group chat was dismissed"
# WeCom's customer groups hold at most 500 members (200 before verification); a group
# keeps at most this many in its state, whatever a broken event source sends.
MAX_MEMBERS = 2000


def learn_group(step: Step, event: CustomerEvent) -> None:
    info = step.state.group = step.state.group or GroupInfo()
    data = event.data
    match event.type:
        case "group.created" | "group.updated":
            if event.type == "group.created" and step.state.profile.added_at is None:
                step.state.profile.added_at = step.now
            changed = _update(info, data)
            if changed:
                step.record("group_updated", None, detail=changed)
        case "group.member_joined":
            member = _member_id(data)
            if member is None:
                return
            customer = data.get("member_type", "customer") != "staff"
            scene = data.get("join_scene")
            if member not in info.members and len(info.members) < MAX_MEMBERS:
                info.members[member] = Member(
                    joined_at=step.now,
                    customer=customer,
                    join_scene=scene if isinstance(scene, int) else None,
                )
            info.last_joined_at = step.now
            step.record(
                "member_joined",
                None,
                detail={"member": member, "member_type": "customer" if customer else "staff"},
            )
        case "group.member_left":
            member = _member_id(data)
            if member is None:
                return
            info.members.pop(member, None)
            step.record("member_left", None, detail={"member": member})
        case "group.dismissed":
            info.dismissed_at = step.now
            step.record("group_updated", None, detail={"status": "dismissed"})
            # A dismissed group receives nothing: its journeys end rather than keep
            # firing sends that no owner can confirm.
            for journey in active_journeys(step.state):
                end_journey(step, journey, DISMISSED_REASON)


def _member_id(data: dict[str, Any]) -> str | None:
    member = data.get("member")
    return member if isinstance(member, str) and member else None


def _update(info: GroupInfo, data: dict[str, Any]) -> dict[str, str]:
    changed = {}
    for key in ("owner", "name"):
        value = data.get(key)
        if isinstance(value, str) and value and value != getattr(info, key):
            setattr(info, key, value)
            changed[key] = value
    return changed
