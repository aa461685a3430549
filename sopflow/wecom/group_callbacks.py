"""WeCom's chat callbacks as a group chat's own events (`group/<chat_id>`).

`customer_events` (callbacks.py) tells each customer who joined or left a group; this
module tells the group itself, whose workflow runs the group's playbooks: created,
members joining and leaving (customers and staff, told apart by their ids), renamed or
handed over, dismissed. A chat callback carries only the chat id and the members' ids:
the owner and the name come from `groupchat/get` (the wecom.group channel asks it when
a group's message needs its owner) or from a `group.created` / `group.updated` event
that names them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sopflow.language.subjects import group_subject
from sopflow.wecom.callbacks import (
    Callback,
    CallbackEvent,
    ExternalChatCreated,
    ExternalChatDismissed,
    ExternalChatUpdated,
    callback_key,
    is_external_user_id,
)


def group_events(
    callback: Callback, is_customer: Callable[[str], bool] = is_external_user_id
) -> list[CallbackEvent]:
    """The events of the group a chat callback is about; none for any other callback."""
    if not isinstance(callback, ExternalChatCreated | ExternalChatUpdated | ExternalChatDismissed):
        return []
    key = callback_key(callback)
    chat_id = callback.chat_id

    def event(type_: str, data: dict[str, Any], who: str = "") -> CallbackEvent:
        return CallbackEvent(
            customer_id=group_subject(chat_id),
            type=type_,
            occurred_at=callback.create_time,
            data={k: v for k, v in data.items() if v is not None},
            idempotency_key=f"{key}/{type_}/{who or chat_id}",
        )

    match callback:
        case ExternalChatCreated():
            return [event("group.created", {})]
        case ExternalChatDismissed():
            return [event("group.dismissed", {})]
        case ExternalChatUpdated(update_detail="add_member"):
            return [
                event(
                    "group.member_joined",
                    {
                        "member": member,
                        "member_type": "customer" if is_customer(member) else "staff",
                        "join_scene": callback.join_scene,
                    },
                    member,
                )
                for member in callback.mem_change_list
            ]
        case ExternalChatUpdated(update_detail="del_member"):
            return [
                event("group.member_left", {"member": m, "quit_scene": callback.quit_scene}, m)
                for m in callback.mem_change_list
            ]
        case ExternalChatUpdated():
            # change_owner, change_name, change_notice: the callback says what changed,
            # not the new value.
            return [event("group.updated", {"update_detail": callback.update_detail})]
