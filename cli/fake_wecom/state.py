"""The fake WeCom's in-memory world and the documented behaviour of each API.

Everything WeCom would decide is decided here, from plain dicts (the HTTP layer in `app.py`
only moves JSON), so tests can drive it directly or through HTTP. Each API handler returns
WeCom's JSON answer: `errcode` 0 and the documented fields, or an error code.

Where the documentation does not say what WeCom does, the fake makes a stated choice (see
docs/wecom.md, "The fake WeCom server").
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sopflow.wecom import errors as codes

JSON = dict[str, Any]

# Development credentials: `make dev` points sopflow at the fake with these.
DEV_CORP_ID = "wwsopflowdev0001"
DEV_SECRET = "sopflow-dev-contact-secret"
DEV_APP_SECRET = "sopflow-dev-app-secret"
DEV_AGENT_ID = 1000002
DEV_CALLBACK_TOKEN = "sopflowdevtoken"
DEV_CALLBACK_AES_KEY = "c29wZmxvdy1kZXYtZmFrZS13ZWNvbS1hZXMta2V5ISE"

REMINDERS_PER_DAY = 3
DAY = 24 * 3600.0
CHINA = ZoneInfo("Asia/Shanghai")

ERRMSG = {
    codes.MISSING_ACCESS_TOKEN: "access_token missing",
    codes.INVALID_ACCESS_TOKEN: "invalid access_token",
    codes.ACCESS_TOKEN_EXPIRED: "access_token expired",
    codes.INVALID_SECRET: "invalid credential",
    codes.INVALID_CORP_ID: "invalid corpid",
    codes.RATE_LIMITED: "api freq out of limit",
    codes.CONCURRENCY_LIMITED: "api concurrent out of limit",
    codes.INVALID_MSGID: "invalid msgid",
    codes.NO_CUSTOMER_TO_SEND: "no valid external_userid or chat_id to send",
    codes.INVALID_WELCOME_CODE: "invalid welcome_code",
    codes.WELCOME_ALREADY_SENT: "externaluser has started chatting",
    codes.MASS_SEND_CANCELLED: "the mass send has been cancelled",
    codes.REMIND_LIMIT_REACHED: "remind too frequently",
    codes.INVALID_TAG_ID: "invalid tagid",
    codes.TAG_LIMIT_REACHED: "corp tag count exceeds 3000",
    codes.NOT_A_CONTACT: "external contact relation not exist",
}
INVALID_PARAMETER = 40058
MISSING_WELCOME_CODE = 41049
EMPTY_CONTENT = 44004
INVALID_AGENT_ID = 40056
JOB_NOT_FOUND = 40088
MOMENT_WITHOUT_CONTENT = 41089
MAX_TAGS = 3000


def error(errcode: int, errmsg: str | None = None) -> JSON:
    return {"errcode": errcode, "errmsg": errmsg or ERRMSG.get(errcode, "error")}


def ok(**fields: Any) -> JSON:
    return {"errcode": 0, "errmsg": "ok", **fields}


class FakeClock:
    """Wall-clock seconds plus an offset that tests move forward (tokens, welcome codes)."""

    def __init__(self, start: float | None = None) -> None:
        self._offset = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class FakeConfig:
    corp_id: str = DEV_CORP_ID
    secret: str = DEV_SECRET
    app_secret: str = DEV_APP_SECRET
    agent_id: int = DEV_AGENT_ID
    callback_token: str = DEV_CALLBACK_TOKEN
    callback_aes_key: str = DEV_CALLBACK_AES_KEY
    callback_url: str | None = None
    token_ttl_seconds: int = 7200
    welcome_code_ttl_seconds: float = 20.0
    # The admin's per-customer limit on mass messages a calendar month (China time);
    # None: no limit. Over it, a confirmed send reports status 3 for that customer.
    mass_messages_per_customer_per_month: int | None = None


@dataclass
class Token:
    value: str
    secret_kind: str
    expires_at: float


@dataclass
class Recipient:
    status: int = 0  # 0 unsent, 1 sent, 2 not a contact, 3 over the limit
    send_time: int | None = None


@dataclass
class SenderTask:
    recipients: dict[str, Recipient]  # external_userid or chat_id -> outcome
    status: int = 0  # 0 unsent, 2 sent (confirmed)
    send_time: int | None = None


@dataclass
class MassSend:
    msgid: str
    chat_type: str
    created_at: float
    content: JSON
    tasks: dict[str, SenderTask]  # sender -> task
    fail_list: list[str]
    cancelled: bool = False
    reminders: list[float] = field(default_factory=list)


@dataclass
class WelcomeCode:
    code: str
    user_id: str
    external_userid: str
    issued_at: float
    used: bool = False


@dataclass
class TagGroup:
    group_id: str
    group_name: str
    order: int
    create_time: int
    tags: dict[str, JSON] = field(default_factory=dict)  # id -> {id, name, order, ...}


@dataclass
class MomentJob:
    jobid: str
    request: JSON
    polls: int = 0
    moment_id: str = ""
    published: set[str] = field(default_factory=set)  # staff who published it
    cancelled: bool = False

    def senders(self) -> list[str]:
        visible = self.request.get("visible_range") or {}
        return list((visible.get("sender_list") or {}).get("user_list") or [])


class FakeWeCom:
    """The fake's state and API behaviour. Not thread-safe: run it on one event loop."""

    def __init__(self, config: FakeConfig | None = None, clock: FakeClock | None = None) -> None:
        self.config = config or FakeConfig()
        self.clock = clock or FakeClock()
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.calls: Counter[str] = Counter()
        self.tokens_issued = 0
        self.failures: dict[str, deque[int]] = defaultdict(deque)
        self.follows: dict[str, list[str]] = {}  # external_userid -> staff, latest last
        self.chats: dict[str, JSON] = {}  # chat_id -> {owner, members}
        self.mass_sends: dict[str, MassSend] = {}
        self.welcome_codes: dict[str, WelcomeCode] = {}
        self.welcomes_sent: list[JSON] = []
        self.tag_groups: dict[str, TagGroup] = {}
        self.customer_tags: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.app_messages: list[JSON] = []
        self.moments: dict[str, MomentJob] = {}
        self.received: dict[str, list[float]] = defaultdict(list)  # target -> send times

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{secrets.token_hex(4)}"

    def _now(self) -> int:
        return int(self.clock.now())

    # -- test hooks ------------------------------------------------------------------------

    def fail_next(self, api: str, times: int = 1, errcode: int = codes.RATE_LIMITED) -> None:
        """The next `times` calls of `api` (a path such as `message/send`, or `*` for any
        API) answer `errcode` without doing anything."""
        self.failures[api].extend([errcode] * times)

    def expire_tokens(self) -> None:
        """Every issued token expires now: the next call with one gets 42001."""
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, self.clock.now())

    def revoke_tokens(self) -> None:
        """Forget every issued token: the next call with one gets 40014."""
        self.tokens.clear()

    def add_contact(self, user_id: str, external_userid: str) -> None:
        """`user_id` (staff) now has `external_userid` as a customer contact."""
        staff = self.follows.setdefault(external_userid, [])
        if user_id in staff:
            staff.remove(user_id)
        staff.append(user_id)

    def remove_contact(self, user_id: str, external_userid: str) -> None:
        staff = self.follows.get(external_userid, [])
        if user_id in staff:
            staff.remove(user_id)

    def add_chat(
        self, chat_id: str, owner: str, members: list[str] | None = None, name: str = ""
    ) -> None:
        self.chats[chat_id] = {"owner": owner, "members": list(members or []), "name": name}

    def publish_moment(self, jobid: str, user_id: str) -> MomentJob:
        """`user_id` publishes the moment of a job in the WeCom client. Raises KeyError for
        an unknown job, ValueError when they are not its sender or it was cancelled."""
        job = self.moments[jobid]
        if job.cancelled:
            raise ValueError(f"moment job {jobid} was cancelled")
        if user_id not in job.senders():
            raise ValueError(f"{user_id} is not a sender of moment job {jobid}")
        if not job.moment_id:
            job.moment_id = self._id("mom")
        job.published.add(user_id)
        return job

    def issue_welcome_code(self, user_id: str, external_userid: str) -> str:
        code = self._id("WELCOME")
        self.welcome_codes[code] = WelcomeCode(code, user_id, external_userid, self.clock.now())
        return code

    def confirm(
        self,
        msgid: str,
        sender: str,
        outcomes: dict[str, int] | None = None,
        skip: list[str] | None = None,
    ) -> SenderTask:
        """`sender` confirms their part of a mass send in the WeCom client.

        Each recipient becomes sent (1), or 2 when no longer their contact, or 3 when over
        the per-customer limit; `outcomes` forces a status, `skip` leaves recipients unsent
        (the staff member deselected them). Raises KeyError/ValueError for the hook's 4xx.
        """
        mass_send = self.mass_sends[msgid]
        if mass_send.cancelled:
            raise ValueError(f"mass send {msgid} was cancelled")
        task = mass_send.tasks[sender]
        if task.status == 2:
            raise ValueError(f"{sender} already confirmed {msgid}")
        now = self._now()
        task.status, task.send_time = 2, now
        for target, recipient in task.recipients.items():
            if skip and target in skip:
                continue
            if outcomes and target in outcomes:
                status = outcomes[target]
            else:
                status = self._outcome(mass_send, sender, target)
            recipient.status = status
            if status == 1:
                recipient.send_time = now
                self.received[target].append(self.clock.now())
        return task

    def _outcome(self, mass_send: MassSend, sender: str, target: str) -> int:
        if mass_send.chat_type == "single" and sender not in self.follows.get(target, []):
            return 2
        limit = self.config.mass_messages_per_customer_per_month
        if limit is not None:
            month = datetime.fromtimestamp(self.clock.now(), CHINA).strftime("%Y-%m")
            this_month = [
                t
                for t in self.received[target]
                if datetime.fromtimestamp(t, CHINA).strftime("%Y-%m") == month
            ]
            if len(this_month) >= limit:
                return 3
        return 1

    def snapshot(self) -> JSON:
        """What was sent, for tests and `/_fake/state`."""
        return {
            "mass_sends": [
                {
                    "msgid": m.msgid,
                    "chat_type": m.chat_type,
                    "cancelled": m.cancelled,
                    "reminders": len(m.reminders),
                    "fail_list": m.fail_list,
                    "content": m.content,
                    "tasks": {
                        sender: {
                            "status": task.status,
                            "recipients": {t: r.status for t, r in task.recipients.items()},
                        }
                        for sender, task in m.tasks.items()
                    },
                }
                for m in self.mass_sends.values()
            ],
            "welcomes": self.welcomes_sent,
            "app_messages": self.app_messages,
            "customer_tags": [
                {"userid": u, "external_userid": e, "tags": sorted(t)}
                for (u, e), t in self.customer_tags.items()
            ],
            "moments": [
                {
                    "jobid": j.jobid,
                    "moment_id": j.moment_id,
                    "published": sorted(j.published),
                    "cancelled": j.cancelled,
                    **j.request,
                }
                for j in self.moments.values()
            ],
            "chats": self.chats,
            "calls": dict(self.calls),
            "tokens_issued": self.tokens_issued,
        }

    # -- the API -----------------------------------------------------------------------------

    def handle(self, path: str, access_token: str | None, args: JSON) -> JSON | None:
        """WeCom's answer to `path`; None for an API the fake does not implement (HTTP 404)."""
        handler = self._handlers().get(path)
        if handler is None:
            return None
        self.calls[path] += 1
        for key in (path, "*"):
            if self.failures[key]:
                return error(self.failures[key].popleft())
        if path != "gettoken":
            refused = self._check_token(access_token)
            if refused is not None:
                return refused
        try:
            return handler(args)
        except (AttributeError, TypeError, ValueError) as bad:
            # A field of the wrong JSON type: WeCom answers "invalid parameter".
            return error(INVALID_PARAMETER, f"invalid parameter: {bad}")

    def _handlers(self) -> dict[str, Callable[[JSON], JSON]]:
        return {
            "gettoken": self.gettoken,
            "externalcontact/add_msg_template": self.add_msg_template,
            "externalcontact/get_groupmsg_list_v2": self.get_groupmsg_list,
            "externalcontact/get_groupmsg_task": self.get_groupmsg_task,
            "externalcontact/get_groupmsg_send_result": self.get_groupmsg_send_result,
            "externalcontact/remind_groupmsg_send": self.remind_groupmsg_send,
            "externalcontact/cancel_groupmsg_send": self.cancel_groupmsg_send,
            "externalcontact/send_welcome_msg": self.send_welcome_msg,
            "externalcontact/get_corp_tag_list": self.get_corp_tag_list,
            "externalcontact/add_corp_tag": self.add_corp_tag,
            "externalcontact/get": self.get_external_contact,
            "externalcontact/mark_tag": self.mark_tag,
            "message/send": self.message_send,
            "externalcontact/add_moment_task": self.add_moment_task,
            "externalcontact/get_moment_task_result": self.get_moment_task_result,
            "externalcontact/get_moment_task": self.get_moment_task,
            "externalcontact/cancel_moment_task": self.cancel_moment_task,
            "externalcontact/groupchat/get": self.groupchat_get,
        }

    def _check_token(self, access_token: str | None) -> JSON | None:
        if not access_token:
            return error(codes.MISSING_ACCESS_TOKEN)
        token = self.tokens.get(access_token)
        if token is None:
            return error(codes.INVALID_ACCESS_TOKEN)
        if self.clock.now() >= token.expires_at:
            return error(codes.ACCESS_TOKEN_EXPIRED)
        return None

    def gettoken(self, args: JSON) -> JSON:
        if args.get("corpid") != self.config.corp_id:
            return error(codes.INVALID_CORP_ID)
        kinds = {self.config.secret: "contact", self.config.app_secret: "app"}
        kind = kinds.get(str(args.get("corpsecret")))
        if kind is None:
            return error(codes.INVALID_SECRET)
        now = self.clock.now()
        # Within its lifetime the same token is returned (doc 91039, older wording).
        for token in self.tokens.values():
            if token.secret_kind == kind and now < token.expires_at:
                return ok(access_token=token.value, expires_in=int(token.expires_at - now))
        value = secrets.token_urlsafe(32)
        ttl = self.config.token_ttl_seconds
        self.tokens[value] = Token(value, kind, now + ttl)
        self.tokens_issued += 1
        return ok(access_token=value, expires_in=ttl)

    # -- mass sends ------------------------------------------------------------------------

    def add_msg_template(self, args: JSON) -> JSON:
        chat_type = args.get("chat_type", "single")
        sender = args.get("sender")
        text = args.get("text") or {}
        attachments = args.get("attachments") or []
        if not text.get("content") and not attachments:
            return error(EMPTY_CONTENT, "text content and attachments are both empty")
        tasks: dict[str, dict[str, Recipient]] = defaultdict(dict)
        fail_list: list[str] = []
        if chat_type == "single":
            customers = list(dict.fromkeys(args.get("external_userid") or []))
            if not customers and not sender:
                return error(INVALID_PARAMETER, "external_userid and sender are both empty")
            if not customers:
                customers = [c for c, staff in self.follows.items() if sender in staff]
            for customer in customers:
                staff = self.follows.get(customer, [])
                owner = sender if sender else (staff[-1] if staff else None)
                if owner is None or owner not in staff:
                    fail_list.append(customer)
                else:
                    tasks[owner][customer] = Recipient()
        elif chat_type == "group":
            if not sender:
                return error(INVALID_PARAMETER, "sender is required for chat_type group")
            chat_ids = args.get("chat_id_list") or [
                c for c, chat in self.chats.items() if chat["owner"] == sender
            ]
            for chat_id in dict.fromkeys(chat_ids):
                chat = self.chats.get(chat_id)
                if chat is None or chat["owner"] != sender:
                    fail_list.append(chat_id)
                else:
                    tasks[sender][chat_id] = Recipient()
        else:
            return error(INVALID_PARAMETER, f"invalid chat_type {chat_type!r}")
        if not tasks:
            return error(codes.NO_CUSTOMER_TO_SEND)
        msgid = self._id("msg")
        self.mass_sends[msgid] = MassSend(
            msgid=msgid,
            chat_type=chat_type,
            created_at=self.clock.now(),
            content={"text": text, "attachments": attachments},
            tasks={s: SenderTask(recipients) for s, recipients in tasks.items()},
            fail_list=fail_list,
        )
        return ok(fail_list=fail_list, msgid=msgid)

    def _page(self, items: list[JSON], args: JSON) -> tuple[list[JSON], str]:
        limit = int(args.get("limit") or 500)
        start = int(args.get("cursor") or 0)
        page = items[start : start + limit]
        following = start + limit
        return page, str(following) if following < len(items) else ""

    def get_groupmsg_list(self, args: JSON) -> JSON:
        start, end = int(args.get("start_time") or 0), int(args.get("end_time") or 0)
        if end < start:
            return error(INVALID_PARAMETER, "end_time before start_time")
        creator = args.get("creator")
        found = [
            {
                "msgid": m.msgid,
                "creator": sender,
                "create_type": 1,
                "text": m.content.get("text") or {},
                "create_time": int(m.created_at),
            }
            for m in self.mass_sends.values()
            if m.chat_type == (args.get("chat_type") or "single")
            and start <= int(m.created_at) <= end
            for sender in m.tasks
            if creator in (None, sender)
        ]
        page, cursor = self._page(found, args)
        return ok(next_cursor=cursor, group_msg_list=page)

    def get_groupmsg_task(self, args: JSON) -> JSON:
        mass_send = self.mass_sends.get(str(args.get("msgid")))
        if mass_send is None:
            return error(codes.INVALID_MSGID)
        tasks = [
            {"userid": sender, "status": task.status}
            | ({"send_time": task.send_time} if task.send_time else {})
            for sender, task in mass_send.tasks.items()
        ]
        page, cursor = self._page(tasks, args)
        return ok(next_cursor=cursor, task_list=page)

    def get_groupmsg_send_result(self, args: JSON) -> JSON:
        mass_send = self.mass_sends.get(str(args.get("msgid")))
        if mass_send is None:
            return error(codes.INVALID_MSGID)
        sender = str(args.get("userid"))
        task = mass_send.tasks.get(sender)
        target_field = "external_userid" if mass_send.chat_type == "single" else "chat_id"
        results = [
            {target_field: target, "userid": sender, "status": r.status}
            | ({"send_time": r.send_time} if r.send_time else {})
            for target, r in (task.recipients.items() if task else [])
        ]
        page, cursor = self._page(results, args)
        return ok(next_cursor=cursor, send_list=page)

    def remind_groupmsg_send(self, args: JSON) -> JSON:
        mass_send = self.mass_sends.get(str(args.get("msgid")))
        if mass_send is None:
            return error(codes.INVALID_MSGID)
        if mass_send.cancelled:
            return error(codes.MASS_SEND_CANCELLED)
        now = self.clock.now()
        mass_send.reminders = [t for t in mass_send.reminders if now - t < DAY]
        if len(mass_send.reminders) >= REMINDERS_PER_DAY:
            return error(codes.REMIND_LIMIT_REACHED)
        mass_send.reminders.append(now)
        return ok()

    def cancel_groupmsg_send(self, args: JSON) -> JSON:
        mass_send = self.mass_sends.get(str(args.get("msgid")))
        if mass_send is None:
            return error(codes.INVALID_MSGID)
        mass_send.cancelled = True  # cancelling twice answers ok (a choice of the fake)
        return ok()

    # -- welcome ---------------------------------------------------------------------------

    def send_welcome_msg(self, args: JSON) -> JSON:
        code = args.get("welcome_code")
        if not code:
            return error(MISSING_WELCOME_CODE, "welcome_code missing")
        text = args.get("text") or {}
        attachments = args.get("attachments") or []
        if not text.get("content") and not attachments:
            return error(EMPTY_CONTENT, "text content and attachments are both empty")
        welcome = self.welcome_codes.get(str(code))
        if welcome is None:
            return error(codes.INVALID_WELCOME_CODE)
        if welcome.used:
            return error(codes.WELCOME_ALREADY_SENT)
        if self.clock.now() - welcome.issued_at > self.config.welcome_code_ttl_seconds:
            return error(codes.INVALID_WELCOME_CODE)
        welcome.used = True
        self.welcomes_sent.append(
            {
                "welcome_code": welcome.code,
                "userid": welcome.user_id,
                "external_userid": welcome.external_userid,
                "text": text,
                "attachments": attachments,
                "sent_at": self._now(),
            }
        )
        return ok()

    # -- tags ------------------------------------------------------------------------------

    def _tag_count(self) -> int:
        return sum(len(group.tags) for group in self.tag_groups.values())

    @staticmethod
    def _group_json(group: TagGroup, tags: list[JSON] | None = None) -> JSON:
        return {
            "group_id": group.group_id,
            "group_name": group.group_name,
            "create_time": group.create_time,
            "order": group.order,
            "deleted": False,
            "tag": list(group.tags.values()) if tags is None else tags,
        }

    def get_corp_tag_list(self, args: JSON) -> JSON:
        group_ids = args.get("group_id") or []
        tag_ids = args.get("tag_id") or []
        groups = []
        for group in self.tag_groups.values():
            if group_ids:
                if group.group_id in group_ids:
                    groups.append(self._group_json(group))
            elif tag_ids:
                chosen = [t for tid, t in group.tags.items() if tid in tag_ids]
                if chosen:
                    groups.append(self._group_json(group, chosen))
            else:
                groups.append(self._group_json(group))
        return ok(tag_group=groups)

    def add_corp_tag(self, args: JSON) -> JSON:
        names = [str(t.get("name", "")) for t in args.get("tag") or []]
        if not names or not all(names):
            return error(INVALID_PARAMETER, "tag names missing (no empty groups)")
        group_id = args.get("group_id")
        if group_id:
            group = self.tag_groups.get(str(group_id))
            if group is None:
                return error(codes.INVALID_TAG_ID)
        else:
            name = str(args.get("group_name") or "")
            if not name:
                return error(INVALID_PARAMETER, "group_id or group_name required")
            found = [g for g in self.tag_groups.values() if g.group_name == name]
            if found:
                group = found[0]
            else:
                order = int(args.get("order") or 0)
                group = TagGroup(self._id("etGROUP"), name, order, self._now())
        new = [n for n in dict.fromkeys(names) if n not in {t["name"] for t in group.tags.values()}]
        if self._tag_count() + len(new) > MAX_TAGS:
            return error(codes.TAG_LIMIT_REACHED)
        self.tag_groups[group.group_id] = group
        orders = {str(t.get("name")): t.get("order") for t in args.get("tag") or []}
        answered = []
        for name in dict.fromkeys(names):
            existing = [t for t in group.tags.values() if t["name"] == name]
            if existing:  # same name in the group: returned, not duplicated (fake's choice)
                answered.append(existing[0])
                continue
            tag_id = self._id("etTAG")
            tag: JSON = {
                "id": tag_id,
                "name": name,
                "create_time": self._now(),
                "order": int(orders.get(name) or 0),
            }
            group.tags[tag_id] = tag
            answered.append(tag)
        return ok(tag_group=self._group_json(group, answered))

    def mark_tag(self, args: JSON) -> JSON:
        user_id, customer = str(args.get("userid")), str(args.get("external_userid"))
        add, remove = args.get("add_tag") or [], args.get("remove_tag") or []
        if not add and not remove:
            return error(INVALID_PARAMETER, "add_tag and remove_tag are both empty")
        if user_id not in self.follows.get(customer, []):
            return error(codes.NOT_A_CONTACT)
        known = {tid for group in self.tag_groups.values() for tid in group.tags}
        if any(t not in known for t in [*add, *remove]):
            return error(codes.INVALID_TAG_ID)
        tags = self.customer_tags[(user_id, customer)]
        tags.update(add)
        tags.difference_update(remove)
        return ok()

    def get_external_contact(self, args: JSON) -> JSON:
        """The customer and each staff member who has them, with that member's corp tags
        (all on one page: the fake never pages)."""
        customer = str(args.get("external_userid"))
        staff = self.follows.get(customer)
        if not staff:
            return error(codes.NOT_A_CONTACT)
        tags = {tid: (g, t) for g in self.tag_groups.values() for tid, t in g.tags.items()}
        follow_user = [
            {
                "userid": user_id,
                "tags": [
                    {
                        "group_name": tags[tid][0].group_name,
                        "tag_name": tags[tid][1]["name"],
                        "tag_id": tid,
                        "type": 1,
                    }
                    for tid in sorted(self.customer_tags.get((user_id, customer), set()))
                    if tid in tags
                ],
            }
            for user_id in staff
        ]
        return ok(external_contact={"external_userid": customer}, follow_user=follow_user)

    # -- app messages to staff -------------------------------------------------------------

    def message_send(self, args: JSON) -> JSON:
        if int(args.get("agentid") or 0) != self.config.agent_id:
            return error(INVALID_AGENT_ID, "invalid agentid")
        msgtype = args.get("msgtype")
        if msgtype == "text" and not (args.get("text") or {}).get("content"):
            return error(EMPTY_CONTENT, "content is empty")
        card = args.get("textcard") or {}
        if msgtype == "textcard" and not (card.get("title") and card.get("description")):
            return error(INVALID_PARAMETER, "textcard needs title, description and url")
        if msgtype not in ("text", "textcard"):
            return error(INVALID_PARAMETER, f"msgtype {msgtype!r} not supported by the fake")
        msgid = self._id("appmsg")
        self.app_messages.append({**args, "msgid": msgid, "sent_at": self._now()})
        return ok(invaliduser="", invalidparty="", invalidtag="", msgid=msgid)

    # -- moments ---------------------------------------------------------------------------

    def add_moment_task(self, args: JSON) -> JSON:
        if not (args.get("text") or {}).get("content") and not args.get("attachments"):
            return error(MOMENT_WITHOUT_CONTENT, "text and attachments are both empty")
        jobid = self._id("job")
        self.moments[jobid] = MomentJob(jobid, args)
        return ok(jobid=jobid)

    def get_moment_task_result(self, args: JSON) -> JSON:
        job = self.moments.get(str(args.get("jobid")))
        if job is None:
            return error(JOB_NOT_FOUND, "jobid not found")
        job.polls += 1
        if job.polls == 1:  # the first poll finds the job still running
            return ok(status=2, type="add_moment_task")
        if not job.moment_id:
            job.moment_id = self._id("mom")
        visible = job.request.get("visible_range") or {}
        wanted_tags = (visible.get("external_contact_list") or {}).get("tag_list") or []
        known = {tid for group in self.tag_groups.values() for tid in group.tags}
        result = {
            "errcode": 0,
            "errmsg": "ok",
            "moment_id": job.moment_id,
            "invalid_sender_list": {"user_list": [], "department_list": []},
            "invalid_external_contact_list": {
                "tag_list": [t for t in wanted_tags if t not in known]
            },
        }
        return ok(status=3, type="add_moment_task", result=result)

    def _job_of_moment(self, moment_id: str) -> MomentJob | None:
        return next((j for j in self.moments.values() if j.moment_id == moment_id), None)

    def get_moment_task(self, args: JSON) -> JSON:
        job = self._job_of_moment(str(args.get("moment_id")))
        if job is None:
            return error(INVALID_PARAMETER, "invalid moment_id")
        tasks = [
            {"userid": user, "publish_status": 1 if user in job.published else 0}
            for user in job.senders()
        ]
        page, cursor = self._page(tasks, args)
        return ok(next_cursor=cursor, task_list=page)

    def cancel_moment_task(self, args: JSON) -> JSON:
        job = self._job_of_moment(str(args.get("moment_id")))
        if job is None:
            return error(INVALID_PARAMETER, "invalid moment_id")
        job.cancelled = True
        return ok()

    # -- customer groups -------------------------------------------------------------------

    def groupchat_get(self, args: JSON) -> JSON:
        chat = self.chats.get(str(args.get("chat_id")))
        if chat is None:
            return error(INVALID_PARAMETER, "invalid chat_id")
        members = [
            {"userid": m, "type": 2 if m.startswith(("wm", "wo")) else 1, "join_scene": 1}
            for m in chat["members"]
        ]
        return ok(
            group_chat={
                "chat_id": str(args.get("chat_id")),
                "name": chat.get("name", ""),
                "owner": chat["owner"],
                "member_list": members,
            }
        )
