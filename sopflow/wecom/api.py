"""Typed requests and responses of the WeCom server API endpoints sopflow calls.

Field names are WeCom's own (snake_case JSON). Each shape was checked against the
endpoint's developer doc (id in the comment) and public SDK code:
- wechatpy `wechatpy/work/client/api/external_contact.py` (add_msg_template, send_welcome_msg,
  get_corp_tag_list, add_corp_tag with `tag`, mark_tag with add_tag/remove_tag);
- silenceper/wechat `work/externalcontact/msg.go` (AddMsgTemplateRequest with chat_id_list
  and allow_select; get_groupmsg_task `task_list`; get_groupmsg_send_result `send_list`;
  remind/cancel with `msgid`) and `moment.go` (add_moment_task `visible_range`,
  get_moment_task_result by GET `jobid`, `result.moment_id`);
- qwdigital/LinkWechat-Scrm's send-result DTO for the status values 0-3.

Responses ignore fields they do not name (WeCom adds fields over time); requests forbid
unknown fields (a typo must fail here, not be dropped silently by WeCom).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sopflow.wecom.errors import WELCOME_ALREADY_SENT

# Limits stated by the endpoint docs; sopflow batches below them.
MAX_EXTERNAL_USERIDS = 10_000  # add_msg_template, chat_type single (92135)
MAX_CHAT_IDS = 2_000  # add_msg_template, chat_type group (92135)
MAX_ATTACHMENTS = 9  # add_msg_template and send_welcome_msg


class WeComRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        """The JSON body (or query, for GET endpoints) without unset optional fields."""
        return self.model_dump(mode="json", exclude_none=True)


class WeComResponse(BaseModel):
    """Every answer carries errcode (0 = success) and errmsg."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    errcode: int = 0
    errmsg: str = "ok"


# -- gettoken (91039) -------------------------------------------------------------------


class GetTokenRequest(WeComRequest):
    corpid: str
    corpsecret: str


class GetTokenResponse(WeComResponse):
    access_token: str = ""
    expires_in: int = 0


# -- message content shared by mass sends and welcomes (92135, 92137) ----------------------


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str


class Image(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    media_id: str | None = None
    pic_url: str | None = None


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    url: str
    picurl: str | None = None
    desc: str | None = None


class Miniprogram(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    pic_media_id: str
    appid: str
    page: str


class Media(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    media_id: str


class ImageAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["image"] = "image"
    image: Image


class LinkAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["link"] = "link"
    link: Link


class MiniprogramAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["miniprogram"] = "miniprogram"
    miniprogram: Miniprogram


class VideoAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["video"] = "video"
    video: Media


class FileAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["file"] = "file"
    file: Media


Attachment = Annotated[
    ImageAttachment | LinkAttachment | MiniprogramAttachment | VideoAttachment | FileAttachment,
    Field(discriminator="msgtype"),
]


def _check_content(text: Text | None, attachments: list[Attachment]) -> None:
    if text is None and not attachments:
        raise ValueError("a message needs text or at least one attachment")
    if len(attachments) > MAX_ATTACHMENTS:
        raise ValueError(f"at most {MAX_ATTACHMENTS} attachments, got {len(attachments)}")


# -- externalcontact/add_msg_template (92135) ----------------------------------------------


class AddMsgTemplateRequest(WeComRequest):
    """A mass-send task: nothing reaches a customer until `sender` confirms it in WeCom."""

    chat_type: Literal["single", "group"] = "single"
    external_userid: list[str] | None = None  # single only; up to 10,000
    chat_id_list: list[str] | None = None  # group only; up to 2,000
    sender: str | None = None  # required for group; for single, with or instead of customers
    allow_select: bool | None = None  # the staff member may re-select recipients (group only)
    text: Text | None = None
    attachments: list[Attachment] = []

    @model_validator(mode="after")
    def _audience(self) -> Self:
        _check_content(self.text, self.attachments)
        if self.chat_type == "single":
            if self.chat_id_list:
                raise ValueError("chat_id_list is for chat_type group")
            if not self.external_userid and not self.sender:
                raise ValueError("chat_type single needs external_userid or sender")
            if self.external_userid and len(self.external_userid) > MAX_EXTERNAL_USERIDS:
                raise ValueError(f"at most {MAX_EXTERNAL_USERIDS} external_userid per task")
        else:
            if self.external_userid:
                raise ValueError("external_userid is for chat_type single")
            if not self.sender:
                raise ValueError("chat_type group needs a sender (the group owner)")
            if self.chat_id_list and len(self.chat_id_list) > MAX_CHAT_IDS:
                raise ValueError(f"at most {MAX_CHAT_IDS} chat_id_list entries per task")
        return self


class AddMsgTemplateResponse(WeComResponse):
    msgid: str = ""
    fail_list: list[str] = []  # customers (or chats) the task could not target


# -- externalcontact/get_groupmsg_task, get_groupmsg_send_result (93338) --------------------


class GetGroupMsgTaskRequest(WeComRequest):
    msgid: str
    limit: int | None = Field(default=None, ge=1, le=1000)
    cursor: str | None = None


class TaskStatus(IntEnum):
    UNSENT = 0
    SENT = 2  # the staff member confirmed


class GroupMsgTask(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    userid: str
    status: int  # TaskStatus
    send_time: int | None = None


class GetGroupMsgTaskResponse(WeComResponse):
    next_cursor: str = ""
    task_list: list[GroupMsgTask] = []


class GetGroupMsgSendResultRequest(WeComRequest):
    msgid: str
    userid: str  # the sender whose results are wanted
    limit: int | None = Field(default=None, ge=1, le=1000)
    cursor: str | None = None


class SendStatus(IntEnum):
    UNSENT = 0
    SENT = 1
    FAILED_NOT_A_CONTACT = 2  # the customer is no longer a contact of the sender
    FAILED_LIMIT_REACHED = 3  # the customer already had this period's mass messages


class GroupMsgSendResult(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    external_userid: str | None = None  # single sends
    chat_id: str | None = None  # group sends
    userid: str
    status: int  # SendStatus
    send_time: int | None = None


class GetGroupMsgSendResultResponse(WeComResponse):
    next_cursor: str = ""
    send_list: list[GroupMsgSendResult] = []


# -- externalcontact/get_groupmsg_list_v2 (93338) ------------------------------------------
# sopflow lists a staff member's recent tasks only to find one it created but could not
# record (the worker died between WeCom's answer and the database write).


class GetGroupMsgListRequest(WeComRequest):
    chat_type: Literal["single", "group"] = "single"
    start_time: int  # seconds since the epoch; WeCom allows a range of up to a month
    end_time: int
    creator: str | None = None
    filter_type: int | None = None  # 0 created by the corp, 1 by staff, 2 all (default)
    limit: int | None = Field(default=None, ge=1, le=100)
    cursor: str | None = None


class GroupMsg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    msgid: str
    creator: str | None = None
    create_type: int | None = None
    text: Text | None = None
    create_time: int | None = None


class GetGroupMsgListResponse(WeComResponse):
    next_cursor: str = ""
    group_msg_list: list[GroupMsg] = []


# -- remind_groupmsg_send (97610), cancel_groupmsg_send (97611) ----------------------------


class MsgIdRequest(WeComRequest):
    msgid: str


# -- externalcontact/send_welcome_msg (92599 / 92137) --------------------------------------


class SendWelcomeMsgRequest(WeComRequest):
    """Once per WelcomeCode, within 20 seconds of the add_external_contact callback."""

    welcome_code: str
    text: Text | None = None
    attachments: list[Attachment] = []

    @model_validator(mode="after")
    def _content(self) -> Self:
        _check_content(self.text, self.attachments)
        return self


class SendWelcomeMsgResponse(WeComResponse):
    @property
    def already_sent(self) -> bool:
        """41051: WeCom will not send it (the customer and staff are chatting already)."""
        return self.errcode == WELCOME_ALREADY_SENT


# -- corp tags: get_corp_tag_list, add_corp_tag, mark_tag (92117, 92118, 92697) -------------


class GetCorpTagListRequest(WeComRequest):
    tag_id: list[str] | None = None
    group_id: list[str] | None = None


class CorpTag(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str
    create_time: int | None = None
    order: int | None = None
    deleted: bool | None = None


class CorpTagGroup(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    group_id: str
    group_name: str
    create_time: int | None = None
    order: int | None = None
    deleted: bool | None = None
    tag: list[CorpTag] = []


class GetCorpTagListResponse(WeComResponse):
    tag_group: list[CorpTagGroup] = []


class NewTag(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=30)
    order: int | None = None


class AddCorpTagRequest(WeComRequest):
    """Add tags to the group `group_id`, or to the group named `group_name` (created when
    new). An empty group cannot be created; same-named tags in a group are created once."""

    group_id: str | None = None
    group_name: str | None = Field(default=None, max_length=30)
    order: int | None = None
    tag: list[NewTag]
    agentid: int | None = None

    @model_validator(mode="after")
    def _group(self) -> Self:
        if not self.group_id and not self.group_name:
            raise ValueError("add_corp_tag needs group_id or group_name")
        if not self.tag:
            raise ValueError("add_corp_tag needs at least one tag (no empty groups)")
        return self


class AddCorpTagResponse(WeComResponse):
    tag_group: CorpTagGroup | None = None


class MarkTagRequest(WeComRequest):
    """Tag a customer (external_userid) for one staff member (userid)."""

    userid: str
    external_userid: str
    add_tag: list[str] = []
    remove_tag: list[str] = []

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.add_tag and not self.remove_tag:
            raise ValueError("mark_tag needs add_tag or remove_tag")
        return self


# -- message/send: app messages to staff (90236) --------------------------------------------


class TextCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(max_length=128)
    description: str = Field(max_length=512)
    url: str
    btntxt: str | None = None


class MessageSendRequest(WeComRequest):
    """An app message to staff: `touser` is user ids joined by `|`."""

    touser: str
    msgtype: Literal["text", "textcard"]
    agentid: int
    text: Text | None = None
    textcard: TextCard | None = None
    enable_duplicate_check: int | None = None
    duplicate_check_interval: int | None = None

    @model_validator(mode="after")
    def _payload(self) -> Self:
        if self.msgtype == "text" and (self.text is None or self.textcard is not None):
            raise ValueError("msgtype text needs text and no textcard")
        if self.msgtype == "textcard" and (self.textcard is None or self.text is not None):
            raise ValueError("msgtype textcard needs textcard and no text")
        return self


class MessageSendResponse(WeComResponse):
    invaliduser: str = ""
    invalidparty: str = ""
    invalidtag: str = ""
    unlicenseduser: str = ""
    msgid: str = ""


# -- moments: add_moment_task, get_moment_task_result (95094) --------------------------------


class MomentLink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    url: str
    media_id: str


class MomentImageAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["image"] = "image"
    image: Media


class MomentVideoAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["video"] = "video"
    video: Media


class MomentLinkAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    msgtype: Literal["link"] = "link"
    link: MomentLink


MomentAttachment = Annotated[
    MomentImageAttachment | MomentVideoAttachment | MomentLinkAttachment,
    Field(discriminator="msgtype"),
]


class SenderList(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    user_list: list[str] = []
    department_list: list[int] = []


class ExternalContactList(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    tag_list: list[str] = []  # moments are targeted by corp tags only


class VisibleRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sender_list: SenderList | None = None
    external_contact_list: ExternalContactList | None = None


class AddMomentTaskRequest(WeComRequest):
    text: Text | None = None
    attachments: list[MomentAttachment] = []
    visible_range: VisibleRange | None = None

    @model_validator(mode="after")
    def _content(self) -> Self:
        if self.text is None and not self.attachments:
            raise ValueError("a moment needs text or at least one attachment")
        return self


class AddMomentTaskResponse(WeComResponse):
    jobid: str = ""


class GetMomentTaskResultRequest(WeComRequest):
    jobid: str


class MomentTaskStatus(IntEnum):
    STARTED = 1
    RUNNING = 2
    DONE = 3


class MomentTaskResult(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    errcode: int = 0
    errmsg: str = "ok"
    moment_id: str | None = None
    invalid_sender_list: SenderList | None = None
    invalid_external_contact_list: ExternalContactList | None = None


class GetMomentTaskResultResponse(WeComResponse):
    status: int = 0  # MomentTaskStatus
    type: str = ""
    result: MomentTaskResult | None = None


class GetMomentTaskRequest(WeComRequest):
    """Who of a moment's staff members published it (doc 93333, 获取客户朋友圈企业发表的列表)."""

    moment_id: str
    cursor: str | None = None
    limit: int | None = Field(default=None, ge=1, le=1000)


class MomentPublishStatus(IntEnum):
    UNPUBLISHED = 0
    PUBLISHED = 1


class MomentTask(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    userid: str
    publish_status: int  # MomentPublishStatus


class GetMomentTaskResponse(WeComResponse):
    next_cursor: str = ""
    task_list: list[MomentTask] = []


class CancelMomentTaskRequest(WeComRequest):
    """Stop a corp moment nobody has published yet (doc 97612)."""

    moment_id: str


# -- externalcontact/groupchat/get (92122) ----------------------------------------------------
# A chat callback carries only the chat id: its owner (who must confirm the group's
# messages) comes from here.


class GroupChatGetRequest(WeComRequest):
    chat_id: str
    need_name: int | None = None  # 1: members' names too


class GroupChatMember(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    userid: str
    type: int  # 1 staff, 2 external contact
    join_time: int | None = None
    join_scene: int | None = None


class GroupChat(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    chat_id: str
    name: str = ""
    owner: str
    create_time: int | None = None
    member_list: list[GroupChatMember] = []


class GroupChatGetResponse(WeComResponse):
    group_chat: GroupChat | None = None


# -- externalcontact/get: a customer and the staff who have them (92114) ---------------------


class GetExternalContactRequest(WeComRequest):
    external_userid: str
    cursor: str | None = None  # a customer of more than 500 staff: the next page


class FollowTag(BaseModel):
    """A tag a staff member put on the customer: type 1 a corp tag (the library's), 2 the
    staff member's own, 3 a rule's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    group_name: str = ""
    tag_name: str = ""
    tag_id: str | None = None
    type: int = 1


class FollowUser(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    userid: str
    createtime: int | None = None
    tags: list[FollowTag] = []


class GetExternalContactResponse(WeComResponse):
    external_contact: dict[str, Any] = {}
    follow_user: list[FollowUser] = []
    next_cursor: str = ""


# -- the endpoint table ----------------------------------------------------------------------

RequestT = TypeVar("RequestT", bound=WeComRequest)
ResponseT = TypeVar("ResponseT", bound=WeComResponse)


@dataclass(frozen=True)
class Endpoint(Generic[RequestT, ResponseT]):
    """One API: its path under the API base, method, shapes and which secret's token."""

    path: str
    method: Literal["GET", "POST"]
    request: type[RequestT]
    response: type[ResponseT]
    token: Literal["contact", "app", "none"] = "contact"


GETTOKEN = Endpoint("gettoken", "GET", GetTokenRequest, GetTokenResponse, token="none")
ADD_MSG_TEMPLATE = Endpoint(
    "externalcontact/add_msg_template", "POST", AddMsgTemplateRequest, AddMsgTemplateResponse
)
GET_GROUPMSG_LIST = Endpoint(
    "externalcontact/get_groupmsg_list_v2",
    "POST",
    GetGroupMsgListRequest,
    GetGroupMsgListResponse,
)
GET_GROUPMSG_TASK = Endpoint(
    "externalcontact/get_groupmsg_task", "POST", GetGroupMsgTaskRequest, GetGroupMsgTaskResponse
)
GET_GROUPMSG_SEND_RESULT = Endpoint(
    "externalcontact/get_groupmsg_send_result",
    "POST",
    GetGroupMsgSendResultRequest,
    GetGroupMsgSendResultResponse,
)
REMIND_GROUPMSG_SEND = Endpoint(
    "externalcontact/remind_groupmsg_send", "POST", MsgIdRequest, WeComResponse
)
CANCEL_GROUPMSG_SEND = Endpoint(
    "externalcontact/cancel_groupmsg_send", "POST", MsgIdRequest, WeComResponse
)
SEND_WELCOME_MSG = Endpoint(
    "externalcontact/send_welcome_msg", "POST", SendWelcomeMsgRequest, SendWelcomeMsgResponse
)
GET_CORP_TAG_LIST = Endpoint(
    "externalcontact/get_corp_tag_list", "POST", GetCorpTagListRequest, GetCorpTagListResponse
)
ADD_CORP_TAG = Endpoint(
    "externalcontact/add_corp_tag", "POST", AddCorpTagRequest, AddCorpTagResponse
)
MARK_TAG = Endpoint("externalcontact/mark_tag", "POST", MarkTagRequest, WeComResponse)
MESSAGE_SEND = Endpoint(
    "message/send", "POST", MessageSendRequest, MessageSendResponse, token="app"
)
ADD_MOMENT_TASK = Endpoint(
    "externalcontact/add_moment_task", "POST", AddMomentTaskRequest, AddMomentTaskResponse
)
GET_MOMENT_TASK_RESULT = Endpoint(
    "externalcontact/get_moment_task_result",
    "GET",
    GetMomentTaskResultRequest,
    GetMomentTaskResultResponse,
)
GET_MOMENT_TASK = Endpoint(
    "externalcontact/get_moment_task", "POST", GetMomentTaskRequest, GetMomentTaskResponse
)
CANCEL_MOMENT_TASK = Endpoint(
    "externalcontact/cancel_moment_task", "POST", CancelMomentTaskRequest, WeComResponse
)
GET_EXTERNAL_CONTACT = Endpoint(
    "externalcontact/get", "GET", GetExternalContactRequest, GetExternalContactResponse
)
GROUPCHAT_GET = Endpoint(
    "externalcontact/groupchat/get", "POST", GroupChatGetRequest, GroupChatGetResponse
)
