"""The API against hostile requests, over HTTP with the real dev server and worker
(issue 11): bounded events, durable idempotency, staff scope, cursors, public docs."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from sopflow.store.keys import Role, create_key
from tests import test_end_to_end
from tests.helpers import describe, eventually, plan_store, read_deliveries
from tests.test_end_to_end import Running

running = test_end_to_end.running  # the API-and-worker fixture

# ----------------------------------------------------------------------------- event bounds


def event(**fields: Any) -> dict[str, Any]:
    return {"customer_id": "bounds-1", "type": "contact.added", **fields}


REFUSED: list[tuple[str, dict[str, Any] | bytes, str, str]] = [
    (
        "a 3,000-character channel code",
        event(data={"channel_code": "c" * 3000}),
        "data.channel_code",
        "a string of 3,000 characters: at most 100",
    ),
    (
        "a 2,100-character tag",
        event(type="tag.added", data={"tag": "t:" + "x" * 2098}),
        "data.tag",
        "a string of 2,100 characters: at most 128",
    ),
    (
        "an amount of 'inf'",
        event(type="order.paid", data={"amount": "inf"}),
        "data.amount",
        "'inf' is not a finite number",
    ),
    (
        "an amount of NaN",
        b'{"customer_id": "bounds-1", "type": "order.paid", "data": {"amount": NaN}}',
        "data.amount",
        "nan is not a finite number (NaN or infinity)",
    ),
    (
        "a number that overflows to infinity",
        b'{"customer_id": "bounds-1", "type": "contact.added", "data": {"n": 1e999}}',
        "data.n",
        "inf is not a finite number (NaN or infinity)",
    ),
    (
        "an integer beyond 64 bits",
        event(data={"n": 2**70}),
        "data.n",
        "an integer beyond 64 bits: at most 2^63 - 1",
    ),
    (
        "an amount beyond a trillion",
        event(type="order.paid", data={"amount": 1e13}),
        "data.amount",
        "10000000000000.0 is beyond ±1,000,000,000,000",
    ),
    (
        "the year 1",
        event(occurred_at="0001-01-01T00:00:00Z"),
        "occurred_at",
        "0001-01-01T00:00:00+00:00 is before 2000-01-01T00:00:00+00:00, the earliest time an "
        "event may have (SOPFLOW_EARLIEST_EVENT_TIME); check the sender's clock",
    ),
    (
        "1.9 MB of attributes",
        event(data={"attributes": {"blob": "x" * 1_900_000}}),
        "data",
        f"{len(json.dumps({'attributes': {'blob': 'x' * 1_900_000}})):,} bytes of JSON: "
        "at most 32,768",
    ),
    (
        "an attribute of 9 KB",
        event(data={"attributes": {"note": "y" * 9000}}),
        "data.attributes.note",
        "a string of 9,000 characters: at most 8,192",
    ),
    (
        "data nested eleven levels",
        event(data={"a": [[[[[[[[[[1]]]]]]]]]]}),
        "data.a.0.0.0.0.0.0.0.0.0",
        "nested deeper than 10 levels",
    ),
    (
        "a key of 200 characters",
        event(data={"k" * 200: 1}),
        "data." + "k" * 40 + "…",
        "a key of 200 characters: at most 100",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
async def test_events_beyond_the_bounds_are_refused_naming_the_field_and_the_limit(
    running: Running, body: dict[str, Any] | bytes, field: str, message: str
) -> None:
    """Findings 1 and 2: what wiped or wedged a customer is refused at the door (422)."""
    if isinstance(body, bytes):
        response = await running.http.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = await running.http.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    # Each detail names the field and says why; some also carry the limit on its own.
    assert (field, message) in [(d["field"], d["message"]) for d in error["details"]]
    assert (await running.http.get("/v1/customers/bounds-1")).status_code == 404  # not sent


async def test_a_batch_names_the_event_of_each_refusal_and_sends_nothing(
    running: Running,
) -> None:
    events = [
        {"customer_id": "bounds-2", "type": "contact.added"},
        {"customer_id": "bounds-3", "type": "order.paid", "data": {"amount": "-Infinity"}},
    ]
    response = await running.http.post("/v1/events:batch", json={"events": events})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "events.1.data.amount", "message": "'-Infinity' is not a finite number"}
    ]
    assert (await running.http.get("/v1/customers/bounds-2")).status_code == 404


async def test_a_control_character_in_an_idempotency_key_is_refused(running: Running) -> None:
    response = await running.http.post("/v1/events", json=event(idempotency_key="a\x00b"))
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "idempotency_key"


# ----------------------------------------------------------------------------- idempotency

ECHO = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: echo}
enrol: {event: contact.added}
stages:
  listening:
    triggers:
      - event: ping
        actions: [{send: {channel: log, text: "pong {{ event.data.n }}"}}]
"""


async def test_a_key_repeated_after_the_workflows_window_still_acts_once(
    running: Running, make_plan
) -> None:
    """Finding 8: the workflow remembers 1,000 keys; the read model remembers every one."""
    plan_store(running.settings).deploy(make_plan(ECHO))
    http, customer = running.http, "idem-1"
    await http.post("/v1/events", json={"customer_id": customer, "type": "contact.added"})
    ping = {"customer_id": customer, "type": "ping", "idempotency_key": "ping-1", "data": {"n": 1}}
    first = await http.post("/v1/events", json=ping)
    assert first.json()["duplicate"] is False
    filler = [
        {"customer_id": customer, "type": "content.read", "idempotency_key": f"read-{i}"}
        for i in range(1000)
    ]
    assert (await http.post("/v1/events:batch", json={"events": filler})).status_code == 202
    again = await http.post("/v1/events", json=ping)  # past the workflow's window
    assert again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    sentinel = {**ping, "idempotency_key": "ping-2", "data": {"n": 2}}
    await http.post("/v1/events", json=sentinel)

    async def both() -> list[str] | None:
        texts = [d["text"] for d in read_deliveries(running.settings)]
        pongs = [t for t in texts if t.startswith("pong")]
        return pongs if "pong 2" in pongs else None

    assert await eventually(both, timeout=60) == ["pong 1", "pong 2"]


async def test_a_key_reused_for_another_event_is_refused_with_both_hashes(
    running: Running,
) -> None:
    http = running.http
    sent = {"customer_id": "idem-2", "type": "contact.added", "idempotency_key": "k-1"}
    assert (await http.post("/v1/events", json=sent)).status_code == 202
    # The same event in other words (keys reordered, the same instant in another zone) is
    # the same event; a different one under the same key is refused.
    changed = {**sent, "data": {"channel_code": "qr_2"}}
    refused = await http.post("/v1/events", json=changed)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    [detail] = error["details"]
    assert detail["field"] == "idempotency_key"
    hashes = [word for word in detail["message"].split() if len(word) == 64]
    assert len(hashes) == 2 and hashes[0] != hashes[1]
    # Another customer may use the same key for its own event.
    other = await http.post("/v1/events", json={**changed, "customer_id": "idem-3"})
    assert other.status_code == 202 and other.json()["duplicate"] is False
    # In a batch: the repeat is flagged; a conflict refuses the whole batch.
    batch = await http.post("/v1/events:batch", json={"events": [sent, {**sent}]})
    assert [r["duplicate"] for r in batch.json()["results"]] == [True, True]
    mixed = await http.post(
        "/v1/events:batch",
        json={"events": [{**sent, "idempotency_key": "k-new"}, changed]},
    )
    assert mixed.status_code == 409
    assert mixed.json()["error"]["details"][0]["field"] == "events.1.idempotency_key"


async def test_two_customers_orders_with_the_same_key_both_count(running: Running) -> None:
    """Finding 8: the read model's orders are keyed per customer."""
    http = running.http
    period = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    await http.put("/v1/metrics/costs", json={"period": period, "fixed_cost": 30})
    events = [
        {"customer_id": c, "type": "contact.added", "data": {"channel_code": "qr_same_key"}}
        for c in ("ord-a", "ord-b")
    ] + [
        {
            "customer_id": c,
            "type": "order.paid",
            "idempotency_key": "order-1",
            "data": {"amount": amount},
        }
        for c, amount in (("ord-a", 100), ("ord-b", 200))
    ]
    assert (await http.post("/v1/events:batch", json={"events": events})).status_code == 202
    figures = (await http.get(f"/v1/metrics/acquisition?period={period}")).json()
    [channel] = [c for c in figures["channels"] if c["channel_code"] == "qr_same_key"]
    assert (channel["converted"], channel["revenue"]) == (2, 300.0)


# ----------------------------------------------------------------------------- staff scope

CALLS = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: calls}
enrol: {event: form.submitted}
stages:
  calling:
    on_enter:
      - task: {id: call, title: "Call {{ customer.id }}", assignee: "staff:li_lei", due: 1d}
"""


async def test_staff_read_and_tag_only_the_customers_they_serve(
    running: Running, make_plan
) -> None:
    """Finding 7: a staff key reads and tags a customer it owns or has had a task for;
    another customer is 403; an unknown id is 404 and no call creates a customer."""
    plan_store(running.settings).deploy(make_plan(CALLS))
    http = running.http
    owned, tasked, other = "scope-owned", "scope-tasked", "scope-other"
    await http.post(
        "/v1/events",
        json={
            "customer_id": owned,
            "type": "contact.added",
            "data": {"attributes": {"owner": "li_lei"}},
        },
    )
    await http.post("/v1/events", json={"customer_id": tasked, "type": "form.submitted"})
    await http.post("/v1/events", json={"customer_id": other, "type": "contact.added"})
    li, _ = create_key(running.database, Role.STAFF, "李雷", staff_id="li_lei")
    as_li = {"Authorization": f"Bearer {li}"}

    async def inbox_has_the_task() -> bool:
        page = (await http.get("/v1/tasks", headers=as_li)).json()
        return any(t["customer_id"] == tasked for t in page["tasks"])

    await eventually(inbox_has_the_task, timeout=30)

    async def status(method: str, path: str, headers: dict[str, str] | None = None) -> int:
        response = await http.request(method, path, headers=headers or {})
        return response.status_code

    async def readable(customer: str) -> bool:
        return await status("GET", f"/v1/customers/{customer}") == 200

    for customer in (owned, tasked, other):
        await eventually(lambda c=customer: readable(c), timeout=30)
    assert await status("GET", f"/v1/customers/{owned}", as_li) == 200
    assert await status("GET", f"/v1/customers/{tasked}", as_li) == 200
    refused = await http.get(f"/v1/customers/{other}", headers=as_li)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        f"staff 'li_lei' does not serve customer '{other}': a staff key reads and tags the "
        "customers it owns (attribute `owner`) or has had a task for"
    )
    assert await status("PUT", f"/v1/customers/{owned}/tags/intent:hot", as_li) == 202
    assert await status("DELETE", f"/v1/customers/{tasked}/tags/intent:hot", as_li) == 202
    assert await status("PUT", f"/v1/customers/{other}/tags/intent:hot", as_li) == 403
    assert await status("DELETE", f"/v1/customers/{other}/tags/intent:hot", as_li) == 403
    for headers in (as_li, None):  # staff and operator alike
        missing = await http.put("/v1/customers/scope-nobody/tags/intent:hot", headers=headers)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "customer_not_found"
        assert await status("DELETE", "/v1/customers/scope-nobody/tags/x:y", headers) == 404
    assert await status("GET", "/v1/customers/scope-nobody") == 404  # nothing was created

    async def tagged() -> bool:
        view = await describe(running.client, owned)
        return "intent:hot" in view.profile.tags

    await eventually(tagged)


# ----------------------------------------------------------------------------- cursors


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "bad",
    [
        cursor(["", ""]),
        cursor(["2026-11-23T09:00:00", "task-1"]),  # a time without a zone
        cursor([1, 2]),
        cursor({"due": "x"}),
        cursor(["not a time", "task-1"]),
        "%%%not-base64",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
    ids=["empty", "naive", "numbers", "object", "not-a-time", "not-base64", "not-utf8"],
)
async def test_a_tasks_cursor_that_this_api_did_not_hand_out_is_a_422(
    running: Running, bad: str
) -> None:
    """Finding 9: these were 500s (SQLAlchemy errors)."""
    response = await running.http.get("/v1/tasks", params={"cursor": bad})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "cursor"


# ----------------------------------------------------------------------------- docs


async def test_the_api_description_is_public_and_holds_no_data(running: Running) -> None:
    """Finding 10, decided: /docs, /redoc and /openapi.json describe routes, never data;
    they answer without a key (SOPFLOW_API_DOCS=false removes them)."""
    base = str(running.http.base_url)
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await anonymous.get(path)).status_code == 200, path
        assert (await anonymous.get("/v1/playbooks")).status_code == 401


async def test_without_api_docs_the_description_is_gone(tmp_path) -> None:
    from api.app import create_app
    from sopflow.settings import Settings

    app = create_app(Settings(home=tmp_path / "home", api_docs=False), temporal=object())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sopflow") as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 404, path


# ----------------------------------------------------------------------------- quarantine

BOOM = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: boom}
enrol: {event: contact.added}
stages:
  waiting:
    triggers:
      - event: boom
        actions: [{send: {channel: log, text: boom}}]
"""


async def test_quarantined_inputs_are_counted_in_the_metrics(
    running: Running, make_plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sopflow.core import actions

    real = actions.send

    def send(step: Any, journey: Any, plan: Any, action: Any, extra: Any = None) -> None:
        if action.text == "boom":
            raise RuntimeError("boom")
        real(step, journey, plan, action, extra)

    monkeypatch.setattr(actions, "send", send)  # a fault in the core, in the worker
    plan_store(running.settings).deploy(make_plan(BOOM))
    http = running.http
    await http.post("/v1/events", json={"customer_id": "q-1", "type": "contact.added"})
    await http.post(
        "/v1/events", json={"customer_id": "q-1", "type": "boom", "idempotency_key": "b-1"}
    )

    async def counted() -> dict[str, Any] | None:
        body = (await http.get("/v1/metrics/quarantined")).json()
        return body if body["total"] else None

    body = await eventually(counted, timeout=30)
    assert body["total"] == 1
    [entry] = body["recent"]
    assert {k: entry[k] for k in ("customer_id", "input", "type", "idempotency_key", "error")} == {
        "customer_id": "q-1",
        "input": "event",
        "type": "boom",
        "idempotency_key": "b-1",
        "error": "RuntimeError: boom",
    }
