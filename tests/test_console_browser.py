"""The console in a real browser: Debian's chromium driven by Playwright, on a real stack
(dev server, worker, API). Each walk saves screenshots; `make screenshots` keeps them in
docs/screenshots/ (the README and docs/console.md show them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from temporalio.testing import WorkflowEnvironment

from sopflow.language import Plan, compile_paths, compile_playbook
from sopflow.language.plan import ProfilePlan
from sopflow.settings import Settings
from sopflow.store.keys import Role, create_key
from tests.conftest import REPO
from tests.console_stack import Stack, running_stack
from tests.helpers import eventually, terminate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "docs" / "screenshots"

CAPPED = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: promo, title: 限时活动 Promotion}
enrol: {event: promo.joined}
contact_policy: {max_per_day: 1}
stages:
  announce:
    on_enter:
      - send: {channel: wecom.private, text: "欢迎参加活动 {{ customer.id }}"}
      - send: {channel: wecom.private, text: "活动规则在这里"}
    triggers:
      - after: 7d
        goto: over
  over: {end: true}
"""

CALLBACKS = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: callbacks, title: 回电 Callbacks}
enrol: {event: callback.requested}
stages:
  calling:
    on_enter:
      - task: {id: call, title: "回电 {{ customer.id }}", assignee: owner, due: 1d,
               script: "您好，我是您的专属顾问。"}
    triggers:
      - event: task.completed
        goto: done
  done: {end: true}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def _plans() -> tuple[list[Plan], ProfilePlan | None]:
    """The shipped playbooks and their profile rules, a capped promotion, staff callbacks."""
    bundle = compile_paths([REPO / "playbooks"])
    extra = [
        compile_playbook(CAPPED, filename="promo.yaml"),
        compile_playbook(CALLBACKS, filename="callbacks.yaml"),
    ]
    return [*bundle.plans.values(), *extra], bundle.profile


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Stack]:
    plans, profile = _plans()
    async with running_stack(dev_env, settings, plans, profile) as running:
        yield running


class Shots:
    """Screenshots into the test's folder; copied to docs/screenshots/ when
    SOPFLOW_UPDATE_SCREENSHOTS=1 (make screenshots), so a test run leaves the tree alone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def take(self, page: Page, name: str) -> None:
        path = self.folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{name}: an empty screenshot"
        if os.environ.get("SOPFLOW_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / path.name)


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path)


async def _sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/console/login")
    await page.fill("#api_key", key)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("networkidle")


async def _overview_counts(stack: Stack, playbook: str, total: int) -> dict[str, int] | None:
    """The playbook's customers per stage on GET /v1/overview, once `total` are in."""
    body = (await stack.http.get("/v1/overview")).json()
    [row] = [p for p in body["playbooks"] if p["name"] == playbook]
    counts = {s["stage"]: s["customers"] for s in row["stages"] if s["customers"]}
    return counts if sum(counts.values()) == total else None


async def _post(stack: Stack, customer: str, kind: str, data: dict | None = None) -> None:
    response = await stack.http.post(
        "/v1/events", json={"customer_id": customer, "type": kind, "data": data or {}}
    )
    assert response.status_code == 202, response.text


@pytest.mark.timeout(240)
async def test_an_operator_walks_every_page(stack: Stack, browser: Browser, shots: Shots) -> None:
    # Contacts without a channel code enter `welcome`; a channel's QR code picks its playbook.
    channels = {"fan-0": None, "fan-1": None, "fan-2": "snack_store_qr", "fan-3": "consult_qr"}
    customers = list(channels)
    for customer, code in channels.items():
        await _post(stack, customer, "contact.added", {"channel_code": code} if code else {})
    await _post(stack, "cap-1", "promo.joined")
    await _post(stack, "esc-1", "contact.added", {"attributes": {"nickname": "<script>x</script>"}})
    counts = await eventually(lambda: _overview_counts(stack, "welcome", 3), timeout=30)

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await _sign_in(page, stack.base, stack.operator_key)
    assert page.url.endswith("/console/")

    # Overview: every shipped playbook, with the API's own counts.
    card = page.locator('article[data-playbook="welcome"]')
    for stage, count in counts.items():
        await expect(card.locator(f'tr[data-stage="{stage}"] .count')).to_have_text(str(count))
    for name in ("auto_high_ticket", "koc_nurturing", "one_to_one_five_stage", "promo"):
        await expect(page.locator(f'article[data-playbook="{name}"]')).to_be_visible()
    await shots.take(page, "overview")

    # Playbook: the graph drawn by Mermaid with the live count, then a simulation.
    await page.click('article[data-playbook="welcome"] h2 a')
    await page.wait_for_selector('body[data-graphs-drawn="true"]')
    stage, count = next(iter(counts.items()))
    await expect(page.locator("#graph svg")).to_contain_text(f"{stage} · {count} now")
    await page.click("form.simulate button[type=submit]")
    await expect(page.locator("#simulation table.timeline")).to_contain_text("journey_ended")
    await page.wait_for_selector("#simulation .chart canvas")
    await shots.take(page, "playbook")

    # Deploy a playbook with a mistake: the diagnostic at its line, the line marked.
    text = (REPO / "playbooks" / "welcome.yaml").read_text(encoding="utf-8")
    broken = text.replace("goto: dormant", "goto: dormnat")
    line = next(i for i, t in enumerate(broken.splitlines(), 1) if "dormnat" in t)
    await page.click("nav >> text=Deploy")
    await page.fill("#text", broken)
    await page.click("form.deploy button[type=submit]")
    diagnostic = page.locator(".diagnostics li.error").first
    await expect(diagnostic).to_contain_text(f"pasted.yaml:{line}:")
    await expect(diagnostic).to_contain_text("unknown stage 'dormnat', did you mean 'dormant'?")
    await expect(page.locator(f"#line-{line}.marked")).to_contain_text("goto: dormnat")
    await diagnostic.locator("a").click()
    await shots.take(page, "deploy-error")

    # Funnel and money.
    await page.goto(f"{stack.base}/console/funnel?playbook=welcome")
    await expect(page.locator("table.funnel")).to_contain_text("icebreak")
    await page.wait_for_selector(".charts canvas")
    await shots.take(page, "funnel")

    # A customer whose second message was capped: the reason on the timeline.
    await page.goto(f"{stack.base}/console/customers?id=cap-")
    await page.click("text=cap-1")

    async def suppressed() -> bool:
        await page.reload()
        return await page.locator("tr.suppressed").count() > 0

    await eventually(suppressed)
    await expect(page.locator("tr.suppressed td.why")).to_have_text(
        "suppressed: daily cap of 1 messages reached"
    )
    await shots.take(page, "customer")

    # What a customer wrote is text, never markup.
    await page.goto(f"{stack.base}/console/customers/esc-1")
    await expect(page.locator(".profile")).to_contain_text("<script>x</script>")
    assert await page.locator(".profile script").count() == 0
    assert errors == []
    await terminate(stack.env.client, *customers, "cap-1", "esc-1")


@pytest.mark.timeout(240)
async def test_staff_on_a_phone_see_only_their_tasks_and_complete_one(
    stack: Stack, browser: Browser, shots: Shots
) -> None:
    mine = ["call-li-1", "call-li-2"]
    for customer in mine:
        await _post(stack, customer, "callback.requested", {"attributes": {"owner": "li_lei"}})
    await _post(stack, "call-han-1", "callback.requested", {"attributes": {"owner": "han_meimei"}})
    li, _ = create_key(stack.database, Role.STAFF, "李雷", staff_id="li_lei")

    async def tasks_written() -> bool:
        page = (await stack.http.get("/v1/tasks?status=open")).json()
        return len(page["tasks"]) == 3

    await eventually(tasks_written, timeout=30)
    phone = await browser.new_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    await _sign_in(phone, stack.base, li)
    assert phone.url.endswith("/console/staff")
    tasks = phone.locator("li.task")
    await expect(tasks).to_have_count(2)
    await expect(phone.locator("ul.tasks")).not_to_contain_text("call-han-1")
    await expect(tasks.first).to_contain_text("您好，我是您的专属顾问。")
    # The page fits the phone: nothing wider than the screen.
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    await shots.take(phone, "staff-375")

    await tasks.first.locator("button.primary").click()
    await expect(phone.locator("li.task.done")).to_contain_text("Completed")
    completed = await phone.locator("li.task.done .task-id").text_content()
    customer = str(completed).split("/")[0]

    async def done() -> bool:
        view = (await stack.http.get(f"/v1/customers/{customer}")).json()
        return view["journeys"][0]["stage"] == "done"

    await eventually(done)
    await shots.take(phone, "staff-375-completed")

    # Another staff member's customer is no customer at all.
    response = await phone.goto(f"{stack.base}/console/customers/call-han-1")
    assert response is not None and response.status == 404
    await terminate(stack.env.client, *mine, "call-han-1")
