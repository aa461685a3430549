"""The fake WeCom as an ASGI app: WeCom's API under /cgi-bin, test hooks under /_fake."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cli.fake_wecom.callbacks import CallbackGenerator, SignedCallback
from cli.fake_wecom.state import FakeWeCom, error

DATA_FORMAT_ERROR = 47001


class Advance(BaseModel):
    seconds: float


class Failure(BaseModel):
    api: str  # a path such as "message/send", or "*" for any API
    times: int = 1
    errcode: int = 45009


class Contact(BaseModel):
    userid: str
    external_userid: str


class Chat(BaseModel):
    chat_id: str
    owner: str
    members: list[str] = []
    name: str = ""


class Publication(BaseModel):
    userid: str


class Confirmation(BaseModel):
    sender: str
    outcomes: dict[str, int] = {}  # recipient -> forced status (2 not a contact, 3 limit)
    skip: list[str] = []  # recipients the staff member deselected: stay unsent


class CallbackOrder(BaseModel):
    userid: str | None = None
    external_userid: str | None = None
    state: str | None = None
    welcome: bool = True
    chat_id: str | None = None
    owner: str | None = None
    update_detail: str | None = None
    members: list[str] | None = None
    join_scene: int | None = None
    quit_scene: int | None = None
    change_type: str | None = None
    tag_id: str | None = None
    tag_type: str = "tag"
    add_tag: list[str] = []  # edit_external_contact: corp tag ids the staff member added
    remove_tag: list[str] = []  # and removed, in the WeCom client
    url: str | None = None  # default: the fake's --callback-url
    repeat: int = 1  # deliver the same callback this many times (WeCom retries)
    deliver: bool = True  # false: only return the signed callback


CallbackKind = Literal[
    "add_external_contact",
    "edit_external_contact",
    "del_external_contact",
    "del_follow_user",
    "chat_create",
    "chat_update",
    "chat_dismiss",
    "tag_change",
]


def _require(value: str | None, name: str) -> str:
    if not value:
        raise HTTPException(422, f"{name} is required for this callback")
    return value


def _build(
    generator: CallbackGenerator, kind: CallbackKind, order: CallbackOrder
) -> SignedCallback:
    if kind == "add_external_contact":
        return generator.add_external_contact(
            _require(order.userid, "userid"),
            _require(order.external_userid, "external_userid"),
            order.state,
            order.welcome,
        )
    if kind == "edit_external_contact":
        return generator.edit_external_contact(
            _require(order.userid, "userid"),
            _require(order.external_userid, "external_userid"),
            order.add_tag,
            order.remove_tag,
        )
    if kind in ("del_external_contact", "del_follow_user"):
        build = getattr(generator, kind)
        signed: SignedCallback = build(
            _require(order.userid, "userid"), _require(order.external_userid, "external_userid")
        )
        return signed
    if kind == "chat_create":
        return generator.chat_create(
            _require(order.chat_id, "chat_id"), _require(order.owner, "owner")
        )
    if kind == "chat_update":
        return generator.chat_update(
            _require(order.chat_id, "chat_id"),
            _require(order.update_detail, "update_detail"),
            order.members,
            order.join_scene,
            order.quit_scene,
        )
    if kind == "chat_dismiss":
        return generator.chat_dismiss(_require(order.chat_id, "chat_id"))
    return generator.tag_change(
        _require(order.change_type, "change_type"), order.tag_id, order.tag_type
    )


def create_app(
    fake: FakeWeCom | None = None, callback_http: httpx.AsyncClient | None = None
) -> FastAPI:
    """The fake's app; `callback_http` delivers callbacks (default: a real HTTP client)."""
    fake = fake or FakeWeCom()
    generator = CallbackGenerator(fake)
    app = FastAPI(title="fake WeCom", docs_url="/_fake/docs", openapi_url="/_fake/openapi.json")
    app.state.fake = fake
    app.state.callbacks = generator

    # Handlers are `async def` so that they run on the event loop, one at a time: the
    # fake's state is not thread-safe.

    @app.api_route("/cgi-bin/{path:path}", methods=["GET", "POST"])
    async def wecom_api(path: str, request: Request) -> JSONResponse:
        args: dict[str, Any] = dict(request.query_params)
        token = args.pop("access_token", None)
        if request.method == "POST":
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse(error(DATA_FORMAT_ERROR, "data format error"))
            if not isinstance(body, dict):
                return JSONResponse(error(DATA_FORMAT_ERROR, "data format error"))
            args.update(body)
        answer = fake.handle(path, token, args)
        if answer is None:
            raise HTTPException(404, f"the fake does not implement {path}")
        return JSONResponse(answer)

    @app.post("/_fake/reset")
    async def reset() -> dict[str, str]:
        fake.reset()
        return {"status": "reset"}

    @app.get("/_fake/state")
    async def state() -> dict[str, Any]:
        return fake.snapshot()

    @app.post("/_fake/clock/advance")
    async def advance(body: Advance) -> dict[str, float]:
        fake.clock.advance(body.seconds)
        return {"now": fake.clock.now()}

    @app.post("/_fake/tokens/expire")
    async def expire() -> dict[str, str]:
        fake.expire_tokens()
        return {"status": "expired"}

    @app.post("/_fake/tokens/revoke")
    async def revoke() -> dict[str, str]:
        fake.revoke_tokens()
        return {"status": "revoked"}

    @app.post("/_fake/fail")
    async def fail(body: Failure) -> dict[str, Any]:
        fake.fail_next(body.api, body.times, body.errcode)
        return {"api": body.api, "pending": len(fake.failures[body.api])}

    @app.post("/_fake/contacts")
    async def contact(body: Contact) -> dict[str, str]:
        fake.add_contact(body.userid, body.external_userid)
        return {"status": "added"}

    @app.post("/_fake/chats")
    async def chat(body: Chat) -> dict[str, str]:
        fake.add_chat(body.chat_id, body.owner, body.members, body.name)
        return {"status": "added"}

    @app.post("/_fake/moments/{jobid}/publish")
    async def publish(jobid: str, body: Publication) -> dict[str, Any]:
        if jobid not in fake.moments:
            raise HTTPException(404, f"no moment job {jobid}")
        try:
            job = fake.publish_moment(jobid, body.userid)
        except ValueError as refused:
            raise HTTPException(409, str(refused)) from refused
        return {"moment_id": job.moment_id, "published": sorted(job.published)}

    @app.post("/_fake/welcome_codes")
    async def welcome_code(body: Contact) -> dict[str, str]:
        return {"welcome_code": fake.issue_welcome_code(body.userid, body.external_userid)}

    @app.post("/_fake/mass_sends/{msgid}/confirm")
    async def confirm(msgid: str, body: Confirmation) -> dict[str, Any]:
        if msgid not in fake.mass_sends:
            raise HTTPException(404, f"no mass send {msgid}")
        if body.sender not in fake.mass_sends[msgid].tasks:
            raise HTTPException(404, f"{body.sender} has no task in {msgid}")
        try:
            task = fake.confirm(msgid, body.sender, body.outcomes, body.skip)
        except ValueError as refused:
            raise HTTPException(409, str(refused)) from refused
        return {"recipients": {t: r.status for t, r in task.recipients.items()}}

    @app.post("/_fake/callbacks/{kind}")
    async def callback(kind: CallbackKind, order: CallbackOrder) -> dict[str, Any]:
        signed = _build(generator, kind, order)
        answer: dict[str, Any] = {
            "query": signed.query,
            "body": signed.body,
            "plaintext": signed.plaintext,
        }
        if order.deliver:
            deliveries = []
            for _ in range(order.repeat):
                try:
                    response = await generator.post(signed, order.url, callback_http)
                except ValueError as missing:
                    raise HTTPException(422, str(missing)) from missing
                except httpx.HTTPError as unreachable:
                    raise HTTPException(502, f"callback URL unreachable: {unreachable}") from None
                deliveries.append({"status": response.status_code, "body": response.text})
            answer["deliveries"] = deliveries
        return answer

    return app
