"""Decrypted WeCom callbacks (developer docs 92130, 92277, 96361) as typed models.

`parse_callback` turns the XML inside a verified, decrypted callback into one model;
`callback_key` names it deterministically, so a callback that WeCom delivers three times
(it retries when the answer takes over 5 seconds) acts once; `customer_events` maps it to
the customer events the journeys understand.

Field names follow the documented XML tags; where the docs are thin they were checked
against public SDKs' event classes (wechatpy `work/events.py`, silenceper/wechat
`work/externalcontact/callback.go`, abp-next-admin's WeCom external-contact event models).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast
from xml.etree.ElementTree import Element

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sopflow.errors import SopflowError
from sopflow.wecom.safexml import MalformedXml, parse_xml


class MalformedCallback(SopflowError):
    """A decrypted callback is not XML we accept, or lacks a field its type requires."""


def _unix_seconds(value: object) -> object:
    if isinstance(value, str) and value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    return value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


UnixTime = Annotated[datetime, BeforeValidator(_unix_seconds)]
# WeCom may send an empty element for an absent number (<JoinScene></JoinScene>).
OptionalInt = Annotated[int | None, BeforeValidator(_blank_is_none)]


class _Callback(BaseModel):
    """Fields every WeCom event callback carries."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    to_user_name: str = Field(alias="ToUserName")  # the corp id
    from_user_name: str = Field(default="sys", alias="FromUserName")
    create_time: UnixTime = Field(alias="CreateTime")
    msg_type: str = Field(default="event", alias="MsgType")


# -- change_external_contact ------------------------------------------------------------


class _ContactChange(_Callback):
    event: Literal["change_external_contact"] = Field(alias="Event")
    user_id: str = Field(alias="UserID", min_length=1)  # the staff member
    external_user_id: str = Field(alias="ExternalUserID", min_length=1)  # the customer


class ExternalContactAdded(_ContactChange):
    """A customer added a staff member (or was added). `State` is the channel code of the
    QR code or link; `WelcomeCode` is present only when no admin welcome is configured."""

    change_type: Literal["add_external_contact"] = Field(alias="ChangeType")
    state: str | None = Field(default=None, alias="State")
    welcome_code: str | None = Field(default=None, alias="WelcomeCode")


class ExternalContactEdited(_ContactChange):
    change_type: Literal["edit_external_contact"] = Field(alias="ChangeType")


class ExternalContactDeleted(_ContactChange):
    """The staff member deleted the customer. `Source` is DELETE_BY_TRANSFER when WeCom
    removed the customer from the old staff member after a transfer."""

    change_type: Literal["del_external_contact"] = Field(alias="ChangeType")
    source: str | None = Field(default=None, alias="Source")


class FollowUserDeleted(_ContactChange):
    """The customer deleted the staff member."""

    change_type: Literal["del_follow_user"] = Field(alias="ChangeType")


class TransferFailed(_ContactChange):
    """A transfer to `UserID` failed: `customer_refused` or `customer_limit_exceed`."""

    change_type: Literal["transfer_fail"] = Field(alias="ChangeType")
    fail_reason: str | None = Field(default=None, alias="FailReason")


# -- change_external_chat ---------------------------------------------------------------


class _ChatChange(_Callback):
    event: Literal["change_external_chat"] = Field(alias="Event")
    chat_id: str = Field(alias="ChatId", min_length=1)


class ExternalChatCreated(_ChatChange):
    change_type: Literal["create"] = Field(alias="ChangeType")


class ExternalChatUpdated(_ChatChange):
    """`UpdateDetail`: add_member, del_member, change_owner, change_name, change_notice.
    `JoinScene` (0 invited, 3 by QR code) with add_member, `QuitScene` (0 left, 1 removed)
    with del_member; `MemChangeList` lists the changed members' ids."""

    change_type: Literal["update"] = Field(alias="ChangeType")
    update_detail: str = Field(alias="UpdateDetail")
    join_scene: OptionalInt = Field(default=None, alias="JoinScene")
    quit_scene: OptionalInt = Field(default=None, alias="QuitScene")
    mem_change_cnt: OptionalInt = Field(default=None, alias="MemChangeCnt")
    mem_change_list: tuple[str, ...] = Field(default=(), alias="MemChangeList")
    last_mem_ver: str | None = Field(default=None, alias="LastMemVer")
    cur_mem_ver: str | None = Field(default=None, alias="CurMemVer")


class ExternalChatDismissed(_ChatChange):
    change_type: Literal["dismiss"] = Field(alias="ChangeType")


# -- change_external_tag ----------------------------------------------------------------


class ExternalTagChanged(_Callback):
    """The corp tag library changed in the WeCom client or admin console (API changes
    produce no callback). `Id` is the tag or group (`TagType` tag | tag_group); a shuffle
    carries the group whose order changed, or none for the whole library."""

    event: Literal["change_external_tag"] = Field(alias="Event")
    change_type: Literal["create", "update", "delete", "shuffle"] = Field(alias="ChangeType")
    id: str | None = Field(default=None, alias="Id")
    tag_type: str | None = Field(default=None, alias="TagType")
    strategy_id: str | None = Field(default=None, alias="StrategyId")


# -- anything else ----------------------------------------------------------------------


class UnknownCallback(_Callback):
    """An event sopflow does not model: kept whole so it can be recorded, never a failure."""

    event: str = Field(alias="Event")
    change_type: str | None = Field(default=None, alias="ChangeType")
    fields: dict[str, str] = {}


Callback = (
    ExternalContactAdded
    | ExternalContactEdited
    | ExternalContactDeleted
    | FollowUserDeleted
    | TransferFailed
    | ExternalChatCreated
    | ExternalChatUpdated
    | ExternalChatDismissed
    | ExternalTagChanged
    | UnknownCallback
)

_MODELS: dict[tuple[str, str], type[_Callback]] = {
    ("change_external_contact", "add_external_contact"): ExternalContactAdded,
    ("change_external_contact", "edit_external_contact"): ExternalContactEdited,
    ("change_external_contact", "del_external_contact"): ExternalContactDeleted,
    ("change_external_contact", "del_follow_user"): FollowUserDeleted,
    ("change_external_contact", "transfer_fail"): TransferFailed,
    ("change_external_chat", "create"): ExternalChatCreated,
    ("change_external_chat", "update"): ExternalChatUpdated,
    ("change_external_chat", "dismiss"): ExternalChatDismissed,
    ("change_external_tag", "create"): ExternalTagChanged,
    ("change_external_tag", "update"): ExternalTagChanged,
    ("change_external_tag", "delete"): ExternalTagChanged,
    ("change_external_tag", "shuffle"): ExternalTagChanged,
}


def _fields(root: Element) -> dict[str, Any]:
    """Child tags to text; MemChangeList to the list of its <Item> texts."""
    fields: dict[str, Any] = {}
    for child in root:
        if child.tag == "MemChangeList":
            fields[child.tag] = tuple((item.text or "").strip() for item in child.iter("Item"))
        elif len(child) == 0:
            fields[child.tag] = (child.text or "").strip()
    return fields


def parse_callback(xml: str | bytes) -> Callback:
    """The typed callback in a decrypted body; unknown event types become UnknownCallback."""
    try:
        root = parse_xml(xml)
    except MalformedXml as error:
        raise MalformedCallback(f"callback refused: {error}") from error
    fields = _fields(root)
    event = fields.get("Event")
    if not event:
        raise MalformedCallback("callback has no <Event>: not an event callback")
    model = _MODELS.get((event, fields.get("ChangeType", "")))
    try:
        if model is None:
            simple = {k: v for k, v in fields.items() if isinstance(v, str)}
            return UnknownCallback.model_validate({**simple, "fields": simple})
        return cast(Callback, model.model_validate(fields))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        kind = f"{event}/{fields.get('ChangeType', '')}".rstrip("/")
        raise MalformedCallback(f"{kind} callback is invalid: {problems}") from error


# -- identity and mapping ---------------------------------------------------------------


def _identity(callback: Callback) -> list[str]:
    """The fields that tell one occurrence from another (not the welcome code or state:
    a retried delivery repeats them, a different occurrence differs elsewhere anyway)."""
    match callback:
        case (
            ExternalContactAdded()
            | ExternalContactEdited()
            | ExternalContactDeleted()
            | FollowUserDeleted()
            | TransferFailed()
        ):
            return [callback.user_id, callback.external_user_id]
        case ExternalChatUpdated():
            return [
                callback.chat_id,
                callback.update_detail,
                callback.cur_mem_ver or "",
                *sorted(callback.mem_change_list),
            ]
        case ExternalChatCreated() | ExternalChatDismissed():
            return [callback.chat_id]
        case ExternalTagChanged():
            return [callback.id or "", callback.tag_type or "", callback.strategy_id or ""]
        case UnknownCallback():
            return [f"{k}={v}" for k, v in sorted(callback.fields.items())]


def callback_key(callback: Callback) -> str:
    """A deterministic key for one occurrence: equal for every delivery of it.

    `wecom/<event>/<change type>/<create time>/<16 hex digits of the identifying fields>`.
    """
    change_type = callback.change_type or "-"
    stamp = int(callback.create_time.timestamp())
    identity = "\x1f".join([callback.to_user_name, *_identity(callback)])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"wecom/{callback.event}/{change_type}/{stamp}/{digest}"


class CallbackEvent(BaseModel):
    """A customer event derived from a callback; the caller maps it to the core's event."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any] = {}
    idempotency_key: str


def is_external_user_id(user_id: str) -> bool:
    """External contacts' ids start with `wm` (WeChat users) or `wo` (WeCom users of other
    corps); staff user ids are the corp's own account names. Used to tell customers from
    staff in a group's member list, which carries bare ids."""
    return user_id.startswith(("wm", "wo"))


def customer_events(
    callback: Callback, is_customer: Callable[[str], bool] = is_external_user_id
) -> list[CallbackEvent]:
    """The customer events a callback means; none for callbacks about staff, chats as a
    whole, the tag library, or unknown types."""
    key = callback_key(callback)
    at = callback.create_time

    def event(customer_id: str, type_: str, data: dict[str, Any]) -> CallbackEvent:
        return CallbackEvent(
            customer_id=customer_id,
            type=type_,
            occurred_at=at,
            data={k: v for k, v in data.items() if v is not None},
            idempotency_key=f"{key}/{type_}/{customer_id}",
        )

    data: dict[str, Any]
    match callback:
        case ExternalContactAdded():
            data = {
                "channel_code": callback.state or None,
                "staff_user_id": callback.user_id,
                "welcome_code": callback.welcome_code or None,
                # The profile's owner: the staff member whose mass sends reach the customer
                # (the one added last, when a customer adds several).
                "attributes": {"owner": callback.user_id},
            }
            return [event(callback.external_user_id, "contact.added", data)]
        case ExternalContactEdited():
            data = {"staff_user_id": callback.user_id}
            return [event(callback.external_user_id, "profile.updated", data)]
        case ExternalContactDeleted():
            data = {
                "removed_by": "staff",
                "staff_user_id": callback.user_id,
                "source": callback.source or None,
            }
            return [event(callback.external_user_id, "contact.removed", data)]
        case FollowUserDeleted():
            data = {"removed_by": "customer", "staff_user_id": callback.user_id}
            return [event(callback.external_user_id, "contact.removed", data)]
        case ExternalChatUpdated(update_detail="add_member"):
            data = {"chat_id": callback.chat_id, "join_scene": callback.join_scene}
            members = [m for m in callback.mem_change_list if is_customer(m)]
            return [event(m, "group.joined", data) for m in members]
        case ExternalChatUpdated(update_detail="del_member"):
            data = {"chat_id": callback.chat_id, "quit_scene": callback.quit_scene}
            members = [m for m in callback.mem_change_list if is_customer(m)]
            return [event(m, "group.left", data) for m in members]
        case _:
            return []
