"""The WeCom client against the fake WeCom server (httpx's ASGI transport, or real uvicorn)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from cli.fake_wecom import (
    DEV_AGENT_ID,
    DEV_APP_SECRET,
    DEV_CALLBACK_AES_KEY,
    DEV_CALLBACK_TOKEN,
    DEV_CORP_ID,
    DEV_SECRET,
    CallbackGenerator,
    FakeConfig,
    FakeWeCom,
    create_app,
)
from sopflow.settings import Settings
from sopflow.wecom import api
from sopflow.wecom.callbacks import callback_key, customer_events, parse_callback
from sopflow.wecom.crypto import BadSignature, WeComCrypto
from sopflow.wecom.errors import ErrorKind, WeComError
from tests.conftest import free_port
from worker.wecom import (
    TokenBucket,
    WeComClient,
    WeComNotConfigured,
    WeComProtocolError,
    WeComRateLimited,
    WeComUnavailable,
)

REPO = Path(__file__).resolve().parent.parent
BASE = "http://fake"
HELLO = api.Text(content="你好")


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom(FakeConfig())


@pytest.fixture
async def http(fake: FakeWeCom) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def client_for(http: httpx.AsyncClient, **options: Any) -> WeComClient:
    settings: dict[str, Any] = {
        "app_secret": DEV_APP_SECRET,
        "agent_id": DEV_AGENT_ID,
        "api_base": f"{BASE}/cgi-bin",
        "requests_per_second": 10_000,
        "http": http,
        **options,
    }
    return WeComClient(DEV_CORP_ID, DEV_SECRET, **settings)


@pytest.fixture
def wecom(http: httpx.AsyncClient) -> WeComClient:
    return client_for(http)


def mass_send(*customers: str, sender: str | None = "zhangsan") -> api.AddMsgTemplateRequest:
    return api.AddMsgTemplateRequest(external_userid=list(customers), sender=sender, text=HELLO)


# -- tokens ------------------------------------------------------------------------------


async def test_one_token_serves_many_calls_even_concurrent_ones(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    await asyncio.gather(*(wecom.get_corp_tag_list() for _ in range(20)))
    await wecom.get_corp_tag_list()
    assert fake.calls["gettoken"] == 1
    assert fake.calls["externalcontact/get_corp_tag_list"] == 21
    assert wecom.token_fetches() == 1


async def test_an_expired_token_is_refreshed_once_and_the_call_retried(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    await wecom.get_corp_tag_list()
    fake.clock.advance(7200)  # WeCom's side expires; the client's cache does not know yet
    answer = await wecom.get_corp_tag_list()
    assert answer.errcode == 0
    assert fake.calls["gettoken"] == 2
    assert fake.calls["externalcontact/get_corp_tag_list"] == 3  # ok, 42001, retried ok


async def test_a_revoked_token_40014_is_refreshed_too(fake: FakeWeCom, wecom: WeComClient) -> None:
    await wecom.get_corp_tag_list()
    fake.revoke_tokens()
    assert (await wecom.get_corp_tag_list()).errcode == 0
    assert fake.calls["gettoken"] == 2


async def test_many_callers_hitting_one_stale_token_cause_one_refresh(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    await wecom.get_corp_tag_list()
    fake.expire_tokens()
    answers = await asyncio.gather(*(wecom.get_corp_tag_list() for _ in range(10)))
    assert all(a.errcode == 0 for a in answers)
    assert fake.calls["gettoken"] == 2


async def test_the_client_refreshes_before_expiry_by_its_own_clock(
    fake: FakeWeCom, http: httpx.AsyncClient
) -> None:
    wecom = client_for(http, clock=fake.clock.now)
    await wecom.get_corp_tag_list()
    fake.clock.advance(7200 - 300 + 1)  # inside the client's 300-second margin
    await wecom.get_corp_tag_list()
    assert fake.calls["gettoken"] == 2
    assert fake.calls["externalcontact/get_corp_tag_list"] == 2  # no 42001 round trip


async def test_a_second_token_error_in_a_row_is_raised_after_exactly_one_retry(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    fake.fail_next("externalcontact/get_corp_tag_list", times=2, errcode=42001)
    with pytest.raises(WeComError) as raised:
        await wecom.get_corp_tag_list()
    assert raised.value.kind is ErrorKind.TOKEN and raised.value.retryable
    assert fake.calls["externalcontact/get_corp_tag_list"] == 2
    assert fake.calls["gettoken"] == 2


async def test_a_wrong_secret_is_a_permanent_error(http: httpx.AsyncClient) -> None:
    wecom = WeComClient(DEV_CORP_ID, "wrong", api_base=f"{BASE}/cgi-bin", http=http)
    with pytest.raises(WeComError, match="gettoken failed with errcode 40001") as raised:
        await wecom.get_corp_tag_list()
    assert raised.value.kind is ErrorKind.PERMANENT and not raised.value.retryable


async def test_app_messages_use_the_app_secrets_token(fake: FakeWeCom, wecom: WeComClient) -> None:
    await wecom.get_corp_tag_list()
    answer = await wecom.send_text_to_staff(["zhangsan", "lisi"], "3 位客户待跟进")
    assert answer.msgid
    card = api.TextCard(
        title="任务", description="回访 wmA", url="https://x/tasks/1", btntxt="查看"
    )
    await wecom.send_textcard_to_staff(["zhangsan"], card)
    assert (wecom.token_fetches("contact"), wecom.token_fetches("app")) == (1, 1)
    sent = fake.snapshot()["app_messages"]
    assert [m["touser"] for m in sent] == ["zhangsan|lisi", "zhangsan"]
    assert sent[0]["text"] == {"content": "3 位客户待跟进"}
    assert sent[1]["textcard"]["url"] == "https://x/tasks/1"


async def test_app_messages_need_an_agent_id(http: httpx.AsyncClient) -> None:
    wecom = client_for(http, agent_id=None)
    with pytest.raises(WeComNotConfigured, match="SOPFLOW_WECOM_AGENT_ID"):
        await wecom.send_text_to_staff(["zhangsan"], "x")


# -- limits and failures -------------------------------------------------------------------


async def test_a_rate_limit_storm_raises_retryable_errors_with_growing_backoff(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    fake.fail_next("message/send", times=3, errcode=45009)
    backoffs = []
    for _ in range(3):
        with pytest.raises(WeComRateLimited) as raised:
            await wecom.send_text_to_staff(["zhangsan"], "x")
        assert raised.value.retryable
        backoffs.append(raised.value.backoff_seconds)
    assert backoffs == [60, 120, 240]
    await wecom.send_text_to_staff(["zhangsan"], "x")  # the storm is over
    fake.fail_next("message/send", errcode=45009)
    with pytest.raises(WeComRateLimited) as again:
        await wecom.send_text_to_staff(["zhangsan"], "x")
    assert again.value.backoff_seconds == 60  # reset by the success
    fake.fail_next("message/send", errcode=45033)
    with pytest.raises(WeComRateLimited) as concurrency:
        await wecom.send_text_to_staff(["zhangsan"], "x")
    assert concurrency.value.backoff_seconds == 2


async def test_rate_limits_on_gettoken_are_typed_too(fake: FakeWeCom, wecom: WeComClient) -> None:
    fake.fail_next("gettoken", errcode=45009)
    with pytest.raises(WeComRateLimited, match="gettoken"):
        await wecom.get_corp_tag_list()
    assert (await wecom.get_corp_tag_list()).errcode == 0


async def test_network_errors_and_5xx_are_unavailable_other_answers_are_protocol_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    statuses = iter([502, 404, 200])

    def answer(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        return httpx.Response(status, text="<html>proxy</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as down:
        with pytest.raises(WeComUnavailable, match="unreachable: ConnectError") as raised:
            await client_for(down).get_corp_tag_list()
        assert raised.value.retryable
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as odd:
        wecom = client_for(odd)
        with pytest.raises(WeComUnavailable, match="answered HTTP 502"):
            await wecom.get_corp_tag_list()
        with pytest.raises(WeComProtocolError, match="HTTP 404: check SOPFLOW_WECOM_API_BASE"):
            await wecom.get_corp_tag_list()
        with pytest.raises(WeComProtocolError, match="non-JSON"):
            await wecom.get_corp_tag_list()


async def test_the_token_bucket_spaces_requests_at_the_configured_rate() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(5.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        await bucket.acquire()
    # A burst of 5, then one every 0.2 s of (virtual) time.
    assert now[0] == pytest.approx(1.0)


async def test_every_request_goes_through_the_corps_bucket(
    fake: FakeWeCom, http: httpx.AsyncClient
) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    wecom = client_for(http, requests_per_second=1, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await wecom.get_corp_tag_list()
    # gettoken + 3 calls at 1/s with a burst of 1: three waits of a second.
    assert now[0] == pytest.approx(3.0)


# -- mass sends ----------------------------------------------------------------------------


async def test_a_mass_send_names_the_customers_it_cannot_target(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    fake.add_contact("zhangsan", "wmA")
    fake.add_contact("lisi", "wmB")
    answer = await wecom.add_msg_template(mass_send("wmA", "wmNOBODY", "wmB"))
    assert answer.msgid
    assert answer.fail_list == ["wmNOBODY", "wmB"]  # unknown; not zhangsan's contact


async def test_a_mass_send_nobody_can_receive_is_refused(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    with pytest.raises(WeComError, match="41048") as raised:
        await wecom.add_msg_template(mass_send("wmNOBODY"))
    assert raised.value.kind is ErrorKind.PERMANENT


async def test_nothing_is_sent_until_the_sender_confirms(
    fake: FakeWeCom, wecom: WeComClient, http: httpx.AsyncClient
) -> None:
    for customer in ("wmA", "wmB", "wmC"):
        fake.add_contact("zhangsan", customer)
    msgid = (await wecom.add_msg_template(mass_send("wmA", "wmB", "wmC"))).msgid
    before = await wecom.get_groupmsg_send_result(msgid, "zhangsan")
    assert {r.external_userid: r.status for r in before.send_list} == {
        "wmA": api.SendStatus.UNSENT,
        "wmB": api.SendStatus.UNSENT,
        "wmC": api.SendStatus.UNSENT,
    }
    task = (await wecom.get_groupmsg_task(msgid)).task_list
    assert [(t.userid, t.status) for t in task] == [("zhangsan", api.TaskStatus.UNSENT)]

    fake.remove_contact("zhangsan", "wmB")  # the customer deleted the staff member meanwhile
    confirmed = await http.post(
        f"/_fake/mass_sends/{msgid}/confirm", json={"sender": "zhangsan", "skip": ["wmC"]}
    )
    assert confirmed.status_code == 200
    after = await wecom.get_groupmsg_send_result(msgid, "zhangsan")
    statuses = {r.external_userid: r.status for r in after.send_list}
    assert statuses == {
        "wmA": api.SendStatus.SENT,
        "wmB": api.SendStatus.FAILED_NOT_A_CONTACT,
        "wmC": api.SendStatus.UNSENT,
    }
    assert next(r for r in after.send_list if r.external_userid == "wmA").send_time
    task = (await wecom.get_groupmsg_task(msgid)).task_list
    assert [(t.userid, t.status) for t in task] == [("zhangsan", api.TaskStatus.SENT)]
    again = await http.post(f"/_fake/mass_sends/{msgid}/confirm", json={"sender": "zhangsan"})
    assert again.status_code == 409


async def test_without_a_sender_each_customers_staff_member_confirms_their_part(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    fake.add_contact("zhangsan", "wmA")
    fake.add_contact("lisi", "wmB")
    msgid = (await wecom.add_msg_template(mass_send("wmA", "wmB", sender=None))).msgid
    fake.confirm(msgid, "lisi")
    zhangsan = await wecom.get_groupmsg_send_result(msgid, "zhangsan")
    lisi = await wecom.get_groupmsg_send_result(msgid, "lisi")
    assert [(r.external_userid, r.status) for r in zhangsan.send_list] == [("wmA", 0)]
    assert [(r.external_userid, r.status) for r in lisi.send_list] == [("wmB", 1)]


async def test_customers_over_the_monthly_limit_are_reported_failed(
    http: httpx.AsyncClient,
) -> None:
    fake = FakeWeCom(FakeConfig(mass_messages_per_customer_per_month=1))
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as limited_http:
        wecom = client_for(limited_http)
        fake.add_contact("zhangsan", "wmA")
        first = (await wecom.add_msg_template(mass_send("wmA"))).msgid
        second = (await wecom.add_msg_template(mass_send("wmA"))).msgid
        fake.confirm(first, "zhangsan")
        fake.confirm(second, "zhangsan")
        results = await wecom.get_groupmsg_send_result(second, "zhangsan")
    assert [r.status for r in results.send_list] == [api.SendStatus.FAILED_LIMIT_REACHED]


async def test_send_results_come_in_pages(fake: FakeWeCom, wecom: WeComClient) -> None:
    customers = [f"wm{i}" for i in range(5)]
    for customer in customers:
        fake.add_contact("zhangsan", customer)
    msgid = (await wecom.add_msg_template(mass_send(*customers))).msgid
    first = await wecom.get_groupmsg_send_result(msgid, "zhangsan", limit=2)
    assert len(first.send_list) == 2 and first.next_cursor
    everything = await wecom.all_groupmsg_send_results(msgid, "zhangsan", limit=2)
    assert [r.external_userid for r in everything] == customers


async def test_group_mass_sends_target_the_senders_groups(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    fake.add_chat("wrA", "zhangsan", ["wmA"])
    fake.add_chat("wrB", "lisi", ["wmB"])
    request = api.AddMsgTemplateRequest(
        chat_type="group", sender="zhangsan", chat_id_list=["wrA", "wrB"], text=HELLO
    )
    answer = await wecom.add_msg_template(request)
    assert answer.fail_list == ["wrB"]
    fake.confirm(answer.msgid, "zhangsan")
    results = await wecom.get_groupmsg_send_result(answer.msgid, "zhangsan")
    assert [(r.chat_id, r.status) for r in results.send_list] == [("wrA", 1)]


async def test_reminders_are_limited_to_three_a_day(fake: FakeWeCom, wecom: WeComClient) -> None:
    fake.add_contact("zhangsan", "wmA")
    msgid = (await wecom.add_msg_template(mass_send("wmA"))).msgid
    for _ in range(3):
        assert (await wecom.remind_groupmsg_send(msgid)).errcode == 0
    with pytest.raises(WeComError, match="41094") as raised:
        await wecom.remind_groupmsg_send(msgid)
    assert not raised.value.retryable
    fake.clock.advance(24 * 3600)
    assert (await wecom.remind_groupmsg_send(msgid)).errcode == 0


async def test_a_cancelled_mass_send_cannot_be_reminded_or_confirmed(
    fake: FakeWeCom, wecom: WeComClient, http: httpx.AsyncClient
) -> None:
    fake.add_contact("zhangsan", "wmA")
    msgid = (await wecom.add_msg_template(mass_send("wmA"))).msgid
    assert (await wecom.cancel_groupmsg_send(msgid)).errcode == 0
    with pytest.raises(WeComError, match="41093"):
        await wecom.remind_groupmsg_send(msgid)
    refused = await http.post(f"/_fake/mass_sends/{msgid}/confirm", json={"sender": "zhangsan"})
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["detail"]
    with pytest.raises(WeComError, match="41047"):
        await wecom.cancel_groupmsg_send("msg-unknown")


# -- welcome -------------------------------------------------------------------------------


async def test_a_welcome_code_works_once(fake: FakeWeCom, wecom: WeComClient) -> None:
    code = fake.issue_welcome_code("zhangsan", "wmA")
    request = api.SendWelcomeMsgRequest(welcome_code=code, text=HELLO)
    first = await wecom.send_welcome_msg(request)
    assert first.errcode == 0 and not first.already_sent
    second = await wecom.send_welcome_msg(request)  # a retried activity
    assert second.already_sent
    assert [w["external_userid"] for w in fake.snapshot()["welcomes"]] == ["wmA"]


async def test_a_welcome_code_expires_after_20_seconds(
    fake: FakeWeCom, wecom: WeComClient, http: httpx.AsyncClient
) -> None:
    code = fake.issue_welcome_code("zhangsan", "wmA")
    await http.post("/_fake/clock/advance", json={"seconds": 21})
    with pytest.raises(WeComError, match="41050") as raised:
        await wecom.send_welcome_msg(api.SendWelcomeMsgRequest(welcome_code=code, text=HELLO))
    assert raised.value.kind is ErrorKind.PERMANENT
    assert fake.snapshot()["welcomes"] == []


async def test_another_app_sending_the_welcome_is_retryable(
    fake: FakeWeCom, wecom: WeComClient, http: httpx.AsyncClient
) -> None:
    code = fake.issue_welcome_code("zhangsan", "wmA")
    hook = await http.post(
        "/_fake/fail", json={"api": "externalcontact/send_welcome_msg", "errcode": 41096}
    )
    assert hook.status_code == 200
    request = api.SendWelcomeMsgRequest(welcome_code=code, text=HELLO)
    with pytest.raises(WeComError, match="41096") as raised:
        await wecom.send_welcome_msg(request)
    assert raised.value.retryable
    assert (await wecom.send_welcome_msg(request)).errcode == 0


# -- tags and moments ----------------------------------------------------------------------


async def test_the_corp_tag_library_and_customer_tags(fake: FakeWeCom, wecom: WeComClient) -> None:
    created = await wecom.add_corp_tag(
        api.AddCorpTagRequest(
            group_name="肤质", tag=[api.NewTag(name="干皮"), api.NewTag(name="油皮")]
        )
    )
    assert created.tag_group is not None
    group_id = created.tag_group.group_id
    ids = {t.name: t.id for t in created.tag_group.tag}
    again = await wecom.add_corp_tag(
        api.AddCorpTagRequest(
            group_id=group_id, tag=[api.NewTag(name="干皮"), api.NewTag(name="敏感")]
        )
    )
    assert again.tag_group is not None
    assert again.tag_group.tag[0].id == ids["干皮"]  # not duplicated
    library = await wecom.get_corp_tag_list()
    assert [(g.group_name, [t.name for t in g.tag]) for g in library.tag_group] == [
        ("肤质", ["干皮", "油皮", "敏感"])
    ]
    only = await wecom.get_corp_tag_list(tag_ids=[ids["油皮"]])
    assert [t.name for t in only.tag_group[0].tag] == ["油皮"]

    fake.add_contact("zhangsan", "wmA")
    await wecom.mark_tag(
        api.MarkTagRequest(userid="zhangsan", external_userid="wmA", add_tag=[ids["干皮"]])
    )
    assert fake.snapshot()["customer_tags"] == [
        {"userid": "zhangsan", "external_userid": "wmA", "tags": [ids["干皮"]]}
    ]
    with pytest.raises(WeComError, match="40068"):
        await wecom.mark_tag(
            api.MarkTagRequest(userid="zhangsan", external_userid="wmA", add_tag=["etNOPE"])
        )
    with pytest.raises(WeComError, match="84061"):
        await wecom.mark_tag(
            api.MarkTagRequest(userid="lisi", external_userid="wmA", add_tag=[ids["干皮"]])
        )


async def test_moment_tasks_finish_asynchronously(fake: FakeWeCom, wecom: WeComClient) -> None:
    tags = await wecom.add_corp_tag(
        api.AddCorpTagRequest(group_name="等级", tag=[api.NewTag(name="VIP")])
    )
    assert tags.tag_group is not None
    vip = tags.tag_group.tag[0].id
    request = api.AddMomentTaskRequest(
        text=api.Text(content="新品上市"),
        visible_range=api.VisibleRange(
            sender_list=api.SenderList(user_list=["zhangsan"]),
            external_contact_list=api.ExternalContactList(tag_list=[vip, "etGONE"]),
        ),
    )
    jobid = (await wecom.add_moment_task(request)).jobid
    running = await wecom.get_moment_task_result(jobid)
    assert running.status == api.MomentTaskStatus.RUNNING and running.result is None
    done = await wecom.get_moment_task_result(jobid)
    assert done.status == api.MomentTaskStatus.DONE
    assert done.result is not None and done.result.moment_id
    assert done.result.invalid_external_contact_list == api.ExternalContactList(tag_list=["etGONE"])


# -- callbacks -----------------------------------------------------------------------------


def receiver_app(crypto: WeComCrypto, received: list[str]) -> FastAPI:
    """A stand-in for sopflow's callback endpoint: verify, decrypt, parse, record."""
    app = FastAPI()

    @app.get("/callback")
    async def verify(msg_signature: str, timestamp: str, nonce: str, echostr: str) -> Response:
        return Response(crypto.verify_url(msg_signature, timestamp, nonce, echostr))

    @app.post("/callback")
    async def accept(msg_signature: str, timestamp: str, nonce: str, request: Request) -> Response:
        try:
            plaintext = crypto.decrypt_callback(
                msg_signature, timestamp, nonce, await request.body()
            )
        except BadSignature:
            return Response("bad signature", status_code=403)
        received.append(plaintext)
        return Response("success")

    return app


async def test_a_callback_round_trip_through_the_crypto_welcomes_the_customer(
    fake: FakeWeCom, wecom: WeComClient, http: httpx.AsyncClient
) -> None:
    crypto = WeComCrypto(DEV_CALLBACK_TOKEN, DEV_CALLBACK_AES_KEY, DEV_CORP_ID)
    received: list[str] = []
    receiver = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver_app(crypto, received)), base_url="http://sopflow"
    )
    generator = CallbackGenerator(fake)
    async with receiver:
        verification = generator.url_verification("echo-123")
        echoed = await receiver.get("/callback", params=verification)
        assert echoed.text == "echo-123"

        signed = generator.add_external_contact("zhangsan", "wmNEW", state="qr-store-12")
        for _ in range(3):  # WeCom retries when the answer is slow
            response = await generator.post(signed, "http://sopflow/callback", http=receiver)
            assert response.text == "success"

        tampered = dict(signed.query, timestamp=str(int(signed.query["timestamp"]) + 1))
        refused = await receiver.post("/callback", params=tampered, content=signed.body)
        assert refused.status_code == 403

    callbacks = [parse_callback(text) for text in received]
    assert len({callback_key(c) for c in callbacks}) == 1
    (event,) = customer_events(callbacks[0])
    assert (event.customer_id, event.type) == ("wmNEW", "contact.added")
    assert event.data["channel_code"] == "qr-store-12"
    welcome = api.SendWelcomeMsgRequest(welcome_code=event.data["welcome_code"], text=HELLO)
    assert (await wecom.send_welcome_msg(welcome)).errcode == 0
    # The callback made wmNEW zhangsan's contact: a mass send reaches them.
    answer = await wecom.add_msg_template(mass_send("wmNEW"))
    assert answer.fail_list == []


async def test_the_callback_hook_delivers_repeatedly_to_a_url(fake: FakeWeCom) -> None:
    crypto = WeComCrypto(DEV_CALLBACK_TOKEN, DEV_CALLBACK_AES_KEY, DEV_CORP_ID)
    received: list[str] = []
    receiver = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver_app(crypto, received)), base_url="http://sopflow"
    )
    app = create_app(fake, callback_http=receiver)
    async with (
        receiver,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as hooks,
    ):
        answer = await hooks.post(
            "/_fake/callbacks/chat_update",
            json={
                "chat_id": "wrA",
                "update_detail": "add_member",
                "members": ["zhangsan", "wmA"],
                "join_scene": 3,
                "url": "http://sopflow/callback",
                "repeat": 3,
            },
        )
        assert answer.status_code == 200
        assert [d["status"] for d in answer.json()["deliveries"]] == [200, 200, 200]
        missing = await hooks.post("/_fake/callbacks/del_follow_user", json={"userid": "zhangsan"})
        assert missing.status_code == 422
        no_url = await hooks.post(
            "/_fake/callbacks/tag_change", json={"change_type": "create", "tag_id": "etX"}
        )
        assert no_url.status_code == 422
        assert "no callback URL" in no_url.json()["detail"]
    events = {
        e.idempotency_key: e for text in received for e in customer_events(parse_callback(text))
    }
    assert [(e.customer_id, e.type) for e in events.values()] == [("wmA", "group.joined")]


# -- settings and the runnable server ---------------------------------------------------------


def test_the_client_is_configured_from_settings(http: httpx.AsyncClient) -> None:
    settings = Settings(
        wecom_corp_id=DEV_CORP_ID,
        wecom_secret=SecretStr(DEV_SECRET),
        wecom_agent_id=DEV_AGENT_ID,
        wecom_api_base=f"{BASE}/cgi-bin/",
        wecom_requests_per_second=5,
    )
    wecom = WeComClient.from_settings(settings, http=http)
    assert (wecom.corp_id, wecom.agent_id, wecom.api_base) == (
        DEV_CORP_ID,
        DEV_AGENT_ID,
        f"{BASE}/cgi-bin",
    )
    with pytest.raises(WeComNotConfigured, match="SOPFLOW_WECOM_CORP_ID and SOPFLOW_WECOM_SECRET"):
        WeComClient.from_settings(Settings(wecom_corp_id=None))


def test_settings_come_from_sopflow_wecom_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOPFLOW_WECOM_CORP_ID", "ww1")
    monkeypatch.setenv("SOPFLOW_WECOM_SECRET", "s3cret")
    monkeypatch.setenv("SOPFLOW_WECOM_CALLBACK_AES_KEY", DEV_CALLBACK_AES_KEY)
    monkeypatch.setenv("SOPFLOW_WECOM_API_BASE", "http://127.0.0.1:8900/cgi-bin")
    settings = Settings()
    assert settings.wecom_corp_id == "ww1"
    assert (
        settings.wecom_secret is not None and settings.wecom_secret.get_secret_value() == "s3cret"
    )
    assert "s3cret" not in repr(settings)
    assert settings.wecom_api_base == "http://127.0.0.1:8900/cgi-bin"
    assert Settings.model_fields["wecom_api_base"].default == "https://qyapi.weixin.qq.com/cgi-bin"


async def test_the_fake_runs_as_a_server(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.fake_wecom", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5.0) as http:
            for _ in range(200):  # until it accepts connections (or 20 s pass)
                try:
                    if (await http.get(f"{base}/_fake/state")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the fake WeCom server did not start")
            wecom = WeComClient(DEV_CORP_ID, DEV_SECRET, api_base=f"{base}/cgi-bin", http=http)
            await http.post(
                f"{base}/_fake/contacts", json={"userid": "zhangsan", "external_userid": "wmA"}
            )
            answer = await wecom.add_msg_template(mass_send("wmA"))
            state = (await http.get(f"{base}/_fake/state")).json()
        assert [m["msgid"] for m in state["mass_sends"]] == [answer.msgid]
        assert state["tokens_issued"] == 1
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=20)
    assert f"SOPFLOW_WECOM_API_BASE=http://127.0.0.1:{port}/cgi-bin" in output.decode()


async def test_the_fake_answers_malformed_requests_with_wecoms_errors(
    fake: FakeWeCom, wecom: WeComClient, http: httpx.AsyncClient
) -> None:
    await wecom.get_corp_tag_list()
    token = next(iter(fake.tokens))
    path = "/cgi-bin/externalcontact/add_msg_template"
    not_json = await http.post(path, params={"access_token": token}, content=b"{")
    assert not_json.json()["errcode"] == 47001
    wrong_type = await http.post(path, params={"access_token": token}, json={"text": "hi"})
    assert wrong_type.json()["errcode"] == 40058
    no_token = await http.post(path, json={})
    assert no_token.json()["errcode"] == 41001
    unknown = await http.post("/cgi-bin/externalcontact/nope", params={"access_token": token})
    assert unknown.status_code == 404


def test_docs_name_every_wecom_setting_and_fake_hook() -> None:
    docs = (REPO / "docs" / "wecom.md").read_text(encoding="utf-8")
    settings = [name for name in Settings.model_fields if name.startswith("wecom_")]
    assert "wecom_corp_id" in settings
    for name in settings:
        assert f"`SOPFLOW_{name.upper()}`" in docs, name
    hooks = [
        route.path
        for route in create_app().routes
        if getattr(route, "path", "").startswith("/_fake/") and "docs" not in route.path
    ]
    hooks = [h for h in hooks if h != "/_fake/openapi.json"]
    for hook in hooks:
        assert hook.split("{")[0] in docs, hook
