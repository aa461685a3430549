"""WeCom's callback URL over HTTP, with the real dev server and worker and the fake WeCom
delivering the callbacks: URL verification, each callback type reaching its workflow, a
repeat acting once, and every refusal recording nothing."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from cli.fake_wecom import DEV_CALLBACK_AES_KEY, DEV_CALLBACK_TOKEN, DEV_CORP_ID
from sopflow.settings import Settings
from sopflow.store.tables import EventKey
from sopflow.wecom.crypto import WeComCrypto
from tests.helpers import describe, eventually, terminate
from tests.wecom_stack import WeComStack, wecom_stack
from workflows.client import describe_customer

PLAYBOOKS = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: added}
enrol: {event: contact.added}
stages:
  greeted:
    on_enter: [{send: {channel: log, text: "hi"}}]
    triggers:
      - {event: contact.removed, goto: gone}
  gone: {end: true}
"""


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[WeComStack]:
    async with wecom_stack(dev_env, settings, PLAYBOOKS) as running:
        yield running


def event_keys(stack: WeComStack) -> int:
    with stack.database.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(EventKey)).scalar_one())


async def stats(stack: WeComStack) -> dict[str, int]:
    response = await stack.http.get("/v1/wecom/callback/stats")
    counts: dict[str, int] = response.json()["counts"]
    return counts


def sealed(
    plaintext: str, *, timestamp: int | None = None, corp_id: str = DEV_CORP_ID
) -> tuple[dict[str, str], str]:
    """A callback sealed by hand: another corp's, or one with a chosen timestamp."""
    crypto = WeComCrypto(DEV_CALLBACK_TOKEN, DEV_CALLBACK_AES_KEY, corp_id)
    stamp, nonce = str(timestamp or int(time.time())), secrets.token_hex(8)
    encrypted = crypto.encrypt(plaintext)
    query = {
        "msg_signature": crypto.signature(stamp, nonce, encrypted),
        "timestamp": stamp,
        "nonce": nonce,
    }
    return query, f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


def contact_xml(change_type: str, customer: str, corp_id: str = DEV_CORP_ID) -> str:
    return (
        f"<xml><ToUserName>{corp_id}</ToUserName><CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType>event</MsgType><Event>change_external_contact</Event>"
        f"<ChangeType>{change_type}</ChangeType><UserID>li_lei</UserID>"
        f"<ExternalUserID>{customer}</ExternalUserID></xml>"
    )


async def test_url_verification_echoes_the_decrypted_echostr(stack: WeComStack) -> None:
    query = stack.callbacks.url_verification("echo-4711")
    response = await stack.http.get("/v1/wecom/callback", params=query, headers={})
    assert (response.status_code, response.text) == (200, "echo-4711")
    forged = {**query, "msg_signature": "0" * 40}
    refused = await stack.http.get("/v1/wecom/callback", params=forged)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "bad_signature"


async def test_each_callback_type_reaches_its_workflow(stack: WeComStack) -> None:
    customer, chat = "wmCb1", "wrChat1"
    [added] = await stack.deliver(
        "add_external_contact", userid="li_lei", external_userid=customer, state=None
    )
    assert added == {"status": 200, "body": "success"}

    async def enrolled() -> Any:
        view = await describe_customer(stack.client, customer)
        return view if view and view.journeys else None

    view = await eventually(enrolled)
    assert view.profile.attributes["owner"] == "li_lei"
    assert view.journeys[0].stage == "greeted"

    await stack.deliver("edit_external_contact", userid="li_lei", external_userid=customer)

    async def edited() -> bool:
        view = await describe(stack.client, customer)
        return "profile.updated" in view.profile.last_event_at

    await eventually(edited)

    await stack.deliver("chat_create", chat_id=chat, owner="li_lei")
    await stack.deliver(
        "chat_update", chat_id=chat, update_detail="add_member", members=[customer, "han_mei"]
    )

    async def grouped() -> Any:
        group = await describe_customer(stack.client, f"group/{chat}")
        member = await describe(stack.client, customer)
        members = set(group.group.members) if group and group.group else set()
        return members == {customer, "han_mei"} and member.profile.groups == [chat]

    await eventually(grouped)
    await stack.deliver("chat_update", chat_id=chat, update_detail="del_member", members=[customer])
    await stack.deliver("chat_dismiss", chat_id=chat)

    async def left_and_dismissed() -> bool:
        group = await describe(stack.client, f"group/{chat}")
        member = await describe(stack.client, customer)
        dismissed = group.group is not None and group.group.dismissed_at is not None
        return member.profile.groups == [] and dismissed

    await eventually(left_and_dismissed)

    await stack.deliver("del_follow_user", userid="li_lei", external_userid=customer)

    async def removed() -> bool:
        view = await describe(stack.client, customer)
        return view.journeys[0].stage == "gone"

    await eventually(removed)
    counts = await stats(stack)
    assert counts["accepted"] == 7
    await terminate(stack.client, customer, f"group/{chat}")


async def test_a_callback_delivered_three_times_acts_once(stack: WeComStack) -> None:
    """Drill: WeCom retries a callback it got no timely answer for. Exact counts: three
    deliveries answered `success`, one event key, one enrolment, one message."""
    customer = "wmThrice"
    deliveries = await stack.deliver(
        "add_external_contact", userid="li_lei", external_userid=customer, repeat=3
    )
    assert deliveries == [{"status": 200, "body": "success"}] * 3

    async def greeted() -> Any:
        view = await describe_customer(stack.client, customer)
        return view if view and any(e.kind == "message" for e in view.timeline) else None

    view = await eventually(greeted)
    kinds = [e.kind for e in view.timeline]
    assert (kinds.count("enrolled"), kinds.count("message")) == (1, 1)
    assert event_keys(stack) == 1
    assert await stats(stack) == {"accepted": 1, "duplicate": 2}
    await terminate(stack.client, customer)


async def test_refused_callbacks_record_nothing(stack: WeComStack) -> None:
    signed = stack.callbacks.add_external_contact("li_lei", "wmForged")
    url = "/v1/wecom/callback"
    forged = {**signed.query, "msg_signature": "f" * 40}
    bad_signature = await stack.http.post(url, params=forged, content=signed.body)
    not_base64 = "<xml><Encrypt>not*base64</Encrypt></xml>"
    query = {
        **signed.query,
        "msg_signature": stack.callbacks.crypto.signature(
            signed.query["timestamp"], signed.query["nonce"], "not*base64"
        ),
    }
    bad_ciphertext = await stack.http.post(url, params=query, content=not_base64)
    other_corp = await post(
        stack, sealed(contact_xml("add_external_contact", "wmX"), corp_id="wwother")
    )
    late = int(time.time()) - 900
    stale = await post(stack, sealed(contact_xml("add_external_contact", "wmLate"), timestamp=late))
    assert [
        (r.status_code, r.json()["error"]["code"])
        for r in (bad_signature, bad_ciphertext, other_corp, stale)
    ] == [
        (403, "bad_signature"),
        (400, "bad_ciphertext"),
        (403, "wrong_corp"),
        (403, "stale_callback"),
    ]
    assert "at most 300 s" in stale.json()["error"]["message"]
    assert event_keys(stack) == 0
    for customer in ("wmForged", "wmX", "wmLate"):
        assert await describe_customer(stack.client, customer) is None


async def post(stack: WeComStack, callback: tuple[dict[str, str], str]) -> httpx.Response:
    query, body = callback
    return await stack.http.post("/v1/wecom/callback", params=query, content=body)


async def test_unknown_and_library_callbacks_are_answered_and_counted(stack: WeComStack) -> None:
    unknown = (
        f"<xml><ToUserName>{DEV_CORP_ID}</ToUserName><CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType>event</MsgType><Event>change_school_contact</Event>"
        "<ChangeType>add_student</ChangeType></xml>"
    )
    response = await post(stack, sealed(unknown))
    assert (response.status_code, response.text) == (200, "success")
    [library] = await stack.deliver("tag_change", change_type="create", tag_id="et1")
    assert library == {"status": 200, "body": "success"}
    assert await stats(stack) == {"unknown": 1, "no_events": 1}
    assert event_keys(stack) == 0


async def test_the_callback_url_is_off_until_configured(settings: Settings) -> None:
    app = create_app(settings, temporal=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.post(
            "/v1/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n"}
        )
    assert response.status_code == 404
    assert "SOPFLOW_WECOM_CALLBACK_TOKEN" in response.json()["error"]["message"]


async def test_with_temporal_down_the_callback_is_refused_for_wecom_to_retry(
    settings: Settings,
) -> None:
    """503: WeCom delivers the callback again later; its key is claimed but not sent, so
    that retry sends it. A server of its own, stopped under the API."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    from cli.binaries import temporal_cli
    from tests.helpers import SERVER_START_LIMIT
    from tests.wecom_stack import wecom_settings

    settings = wecom_settings(settings)
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(temporal_cli()),
        dev_server_startup_timeout=SERVER_START_LIMIT,
    )
    app = create_app(settings, temporal=env.client)
    app.state.temporal = env.client  # the lifespan that sets it does not run here
    await env.shutdown()
    signed = sealed(contact_xml("add_external_contact", "wmDown"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.post("/v1/wecom/callback", params=signed[0], content=signed[1])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "temporal_unavailable"
    with app.state.database.engine.connect() as connection:
        rows = connection.execute(select(EventKey.customer_id, EventKey.sent)).all()
    assert [tuple(r) for r in rows] == [("wmDown", False)]
