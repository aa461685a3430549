"""The console without a browser: sessions, CSRF, staff isolation, escaping, the queries
behind the pages and the pure view functions. The browser walks are in
test_console_browser.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.console.auth import COOKIE
from api.console.views import explain, live_graph, parse_events_text, plan_diff
from api.routes.overview import week_start
from sopflow.core.state import TimelineEntry
from sopflow.reports.funnel import Funnel, Transition
from sopflow.settings import Settings
from sopflow.store.console_queries import awaiting_confirmation, stage_counts
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key, revoke_key
from sopflow.store.ledger import Ledger
from tests.conftest import REPO, T0
from tests.console_stack import csrf_of, offline_app, seed_task, sign_in
from tests.helpers import plan_store

VENDOR = REPO / "api" / "console" / "static" / "vendor"
SCRIPT = "<script>alert(1)</script>"


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    table = (VENDOR / "VENDORED.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"^\| `([^`]+)` \|.*?\| `([0-9a-f]{64})` \|", table, re.M))
    assets = sorted(p.name for p in VENDOR.iterdir() if p.suffix in (".js", ".css"))
    assert sorted(recorded) == assets
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    for licence in ("htmx", "mermaid", "uPlot"):
        assert (VENDOR / f"{licence}.LICENSE.txt").stat().st_size > 0


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database.from_settings(Settings(home=tmp_path / "home"))


@pytest.fixture
async def console(tmp_path: Path, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(home=tmp_path / "home")
    app = offline_app(settings, database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_pages_need_a_session_and_send_the_browser_to_sign_in(
    console: httpx.AsyncClient,
) -> None:
    page = await console.get("/console/customers")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=/console/customers"
    fragment = await console.get("/console/staff", headers={"HX-Request": "true"})
    assert fragment.headers["HX-Redirect"] == "/console/login?next=/console/staff"


async def test_the_session_cookie_is_httponly_lax_and_secure_behind_tls(
    console: httpx.AsyncClient, database: Database
) -> None:
    key, _ = create_key(database, Role.OPERATOR, "ops")
    form = await console.get("/console/login")
    anonymous = form.headers["set-cookie"]
    assert "HttpOnly" in anonymous and "SameSite=lax" in anonymous
    assert "Path=/console" in anonymous and "Secure" not in anonymous
    signed_in = await console.post(
        "/console/login",
        data={"api_key": key, "csrf_token": csrf_of(form.text)},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    assert key not in cookie  # the key never travels in the cookie
    assert "max-age=43200" in cookie.lower()


async def test_sign_in_refuses_bad_keys_ingest_keys_and_a_missing_token(
    console: httpx.AsyncClient, database: Database
) -> None:
    ingest, _ = create_key(database, Role.INGEST, "bridge")
    form = await console.get("/console/login")
    token = csrf_of(form.text)
    no_token = await console.post("/console/login", data={"api_key": ingest})
    assert no_token.status_code == 403
    assert "missing or wrong CSRF token" in no_token.text
    wrong = await console.post("/console/login", data={"api_key": "sf_x_y", "csrf_token": token})
    assert wrong.status_code == 401 and "invalid or revoked API key" in wrong.text
    as_ingest = await console.post("/console/login", data={"api_key": ingest, "csrf_token": token})
    assert as_ingest.status_code == 403
    assert "this key can only send events (role ingest)" in as_ingest.text
    assert (await console.get("/console/", follow_redirects=False)).status_code == 303


async def test_every_post_refuses_a_missing_or_foreign_csrf_token(
    console: httpx.AsyncClient, database: Database, tmp_path: Path
) -> None:
    key, _ = create_key(database, Role.OPERATOR, "ops")
    token = await sign_in(console, key)
    text = (REPO / "playbooks" / "welcome.yaml").read_text(encoding="utf-8")
    forged = "x" * len(token)
    for path, data in (
        ("/console/deploy", {"text": text}),
        ("/console/playbooks/welcome/simulate", {"events": ""}),
        ("/console/tasks/t-1/complete", {}),
        ("/console/tasks/t-1/postpone", {"by": "1d"}),
        ("/console/logout", {}),
    ):
        missing = await console.post(path, data=data)
        assert missing.status_code == 403, path
        assert "missing or wrong CSRF token" in missing.text, path
        foreign = await console.post(path, data={**data, "csrf_token": forged})
        assert foreign.status_code == 403, path
        header = await console.post(path, data=data, headers={"X-CSRF-Token": forged})
        assert header.status_code == 403, path
    assert plan_store(Settings(home=tmp_path / "home")).deployment().playbooks == {}
    # With the session's own token the same deploy goes through.
    deployed = await console.post("/console/deploy", data={"text": text, "csrf_token": token})
    assert deployed.status_code == 201 and "Deployed" in deployed.text


async def test_signing_out_or_revoking_the_key_ends_the_session(
    console: httpx.AsyncClient, database: Database
) -> None:
    key, principal = create_key(database, Role.OPERATOR, "ops")
    token = await sign_in(console, key)
    out = await console.post("/console/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert (await console.get("/console/")).status_code == 303
    await sign_in(console, key)
    revoke_key(database, principal.key_id)
    assert (await console.get("/console/")).status_code == 303


async def test_staff_see_only_their_own_tasks_and_customers(
    console: httpx.AsyncClient, database: Database
) -> None:
    due = datetime.now(UTC) + timedelta(hours=3)
    seed_task(database, "li-task-1", "cust-li", "li_lei", "Call 李雷's customer", due)
    seed_task(database, "han-task-1", "cust-han", "han_meimei", "Call 韩梅梅's customer", due)
    li, _ = create_key(database, Role.STAFF, "李雷", staff_id="li_lei")
    token = await sign_in(console, li)
    inbox = await console.get("/console/staff?assignee=han_meimei")
    assert "Call 李雷&#39;s customer" in inbox.text
    for theirs in ("han-task-1", "cust-han", "韩梅梅"):  # not even when asked for
        assert theirs not in inbox.text
    customers = await console.get("/console/customers")
    assert "cust-li" in customers.text and "cust-han" not in customers.text
    other = await console.post("/console/tasks/han-task-1/complete", data={"csrf_token": token})
    assert other.status_code == 403
    assert "this task is assigned to someone else" in other.text
    for page in ("/console/funnel", "/console/playbooks/welcome", "/console/deploy"):
        assert (await console.get(page)).status_code == 403, page
    assert (await console.get("/console/", follow_redirects=False)).headers[
        "location"
    ] == "/console/staff"


async def test_pages_escape_what_customers_and_playbooks_wrote(
    console: httpx.AsyncClient, database: Database
) -> None:
    due = datetime.now(UTC) - timedelta(hours=1)
    seed_task(database, "t-esc", "cust-esc", "li_lei", f"Call {SCRIPT}", due)
    Ledger(database).record_timeline(
        "cust-esc",
        [
            TimelineEntry(
                at=due,
                kind="message",
                seq=1,
                playbook="p",
                stage="s",
                channel="wecom.private",
                text=f"hello {SCRIPT}",
                idempotency_key="cust-esc/p#1/1",
            )
        ],
    )
    key, _ = create_key(database, Role.OPERATOR, "ops")
    await sign_in(console, key)
    staff = await console.get("/console/staff")
    assert SCRIPT not in staff.text
    assert "Call &lt;script&gt;alert(1)&lt;/script&gt;" in staff.text
    assert "hello &lt;script&gt;" in staff.text  # the send awaiting confirmation
    found = await console.get("/console/customers", params={"id": "cust-"})
    assert "cust-esc" in found.text
    assert "script-src 'self'" in staff.headers["content-security-policy"]


async def test_a_deploy_with_an_error_shows_it_at_its_line_and_column(
    console: httpx.AsyncClient, database: Database
) -> None:
    key, _ = create_key(database, Role.OPERATOR, "ops")
    token = await sign_in(console, key)
    text = (REPO / "playbooks" / "welcome.yaml").read_text(encoding="utf-8")
    broken = text.replace("goto: dormant", "goto: dormnat")
    line = next(i for i, t in enumerate(broken.splitlines(), 1) if "dormnat" in t)
    column = broken.splitlines()[line - 1].index("dormnat") + 1
    page = await console.post("/console/deploy", data={"text": broken, "csrf_token": token})
    assert page.status_code == 422
    assert f"pasted.yaml:{line}:{column}</a>" in page.text
    assert "unknown stage &#39;dormnat&#39;, did you mean &#39;dormant&#39;?" in page.text
    assert f'id="line-{line}" class="line marked"' in page.text
    uploaded = await console.post(
        "/console/deploy",
        data={"csrf_token": token},
        files={"file": ("mine.yaml", broken.encode(), "text/yaml")},
    )
    assert f"mine.yaml:{line}:{column}" in uploaded.text


def _entry(seq: int, kind: str, playbook: str, stage: str, **fields: object) -> TimelineEntry:
    return TimelineEntry(
        at=T0 + timedelta(minutes=seq), kind=kind, seq=seq, playbook=playbook, stage=stage, **fields
    )


@pytest.fixture
def any_database(database_settings: Settings) -> Iterator[Database]:
    """A fresh read model on SQLite, then on PostgreSQL."""
    database = Database.from_settings(database_settings)
    yield database
    database.dispose()


def test_customers_per_stage_now_follow_each_journeys_last_position(
    any_database: Database,
) -> None:
    database = any_database
    ledger = Ledger(database)
    ledger.record_timeline(
        "a",
        [
            _entry(1, "enrolled", "w", "one"),
            _entry(2, "stage_entered", "w", "one"),
            _entry(3, "stage_entered", "w", "two"),
            _entry(4, "enrolled", "v", "x"),
            _entry(5, "stage_entered", "v", "x"),
        ],
    )
    ledger.record_timeline(
        "b",
        [
            _entry(1, "enrolled", "w", "one"),
            _entry(2, "stage_entered", "w", "one"),
            _entry(3, "journey_ended", "w", "one"),
        ],
    )
    ledger.record_timeline(
        "c",
        [
            _entry(1, "enrolled", "w", "one"),
            _entry(2, "stage_entered", "w", "one"),
            _entry(3, "message", "w", "one", channel="log", text="hi"),
            _entry(4, "migrated", "w", "three"),
        ],
    )
    assert stage_counts(database) == {"w": {"two": 1, "three": 1}, "v": {"x": 1}}


def test_sends_awaiting_confirmation_are_undelivered_wecom_messages(
    any_database: Database,
) -> None:
    database = any_database
    ledger = Ledger(database)
    for customer in ("mine", "theirs"):
        ledger.record_timeline(
            customer,
            [
                _entry(
                    1,
                    "message",
                    "p",
                    "s",
                    channel="wecom.private",
                    text="待确认",
                    idempotency_key=f"{customer}/1",
                ),
                _entry(
                    2,
                    "message",
                    "p",
                    "s",
                    channel="log",
                    text="log",
                    idempotency_key=f"{customer}/2",
                ),
            ],
        )
    seed_task(database, "t-mine", "mine", "li_lei", "call", T0)
    assert [s.customer_id for s in awaiting_confirmation(database, None)] == ["mine", "theirs"]
    assert [s.customer_id for s in awaiting_confirmation(database, "li_lei")] == ["mine"]


def test_reasons_say_why_an_action_did_not_happen() -> None:
    deferred = _entry(
        1,
        "deferred",
        "p",
        "s",
        channel="wecom.private",
        text="hi",
        detail={"until": "2026-11-23T03:30:00+00:00", "reason": "send window"},
    )
    assert explain(deferred, "Asia/Shanghai") == "deferred until 11:30: outside the send window"
    suppressed = _entry(2, "suppressed", "p", "s", error="weekly cap of 5 messages reached")
    assert explain(suppressed, "UTC") == "suppressed: weekly cap of 5 messages reached"
    failed = _entry(3, "message", "p", "s", status="failed", error="webhook refused with HTTP 404")
    assert explain(failed, "UTC") == "failed: webhook refused with HTTP 404"
    quiet = _entry(
        4,
        "deferred",
        "p",
        "s",
        detail={"until": "2026-11-25T00:00:00+00:00", "reason": "quiet hours"},
    )
    assert explain(quiet, "UTC") == "deferred until 2026-11-25 00:00: inside quiet hours"


def test_the_live_graph_carries_counts_and_edge_rates(welcome_plan, make_plan) -> None:
    funnel = Funnel(
        playbook="welcome",
        enrolled=10,
        goal_reached=0,
        goal_conversion_rate=0.0,
        stages=[],
        transitions=[Transition(source="icebreak", target="engaged", customers=4, rate=0.4)],
        messages_by_channel={},
    )
    graph = live_graph(welcome_plan, {"icebreak": 6}, funnel).splitlines()
    assert '    state "icebreak · 6 now" as icebreak' in graph
    assert '    state "engaged · 0 now" as engaged' in graph
    assert any(
        line.startswith("    icebreak --> engaged : ") and line.endswith("· 40% (4)")
        for line in graph
    )
    changed = make_plan(
        (REPO / "playbooks" / "welcome.yaml")
        .read_text(encoding="utf-8")
        .replace("after: 14d", "after: 10d")
    )
    diff = plan_diff(welcome_plan, changed)
    assert [d.text for d in diff if d.kind == "remove"] == ["-      after_seconds: 1209600"]
    assert [d.text for d in diff if d.kind == "add"] == ["+      after_seconds: 864000"]


def test_the_events_editor_reports_where_its_yaml_is_wrong() -> None:
    assert parse_events_text("- {after: 1h, type: order.paid}") == [
        {"after": "1h", "type": "order.paid"}
    ]
    with pytest.raises(ValueError, match=r"events: line 2, column 4: expected .,. or .}."):
        parse_events_text("- {after: 1h\n- x")
    with pytest.raises(ValueError, match="a YAML list"):
        parse_events_text("type: order.paid")


def test_this_week_starts_on_monday_in_the_reporting_zone() -> None:
    sunday_night = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # Monday 01:00 in Shanghai
    assert week_start(sunday_night, "Asia/Shanghai").isoformat() == "2026-11-30T00:00:00+08:00"
    assert week_start(sunday_night, "UTC").isoformat() == "2026-11-23T00:00:00+00:00"
