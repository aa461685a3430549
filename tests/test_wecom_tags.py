"""The corp tag library in step with the taxonomy (sync-tags), against the fake WeCom."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from cli.fake_wecom import FakeConfig, FakeWeCom
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.language.plan import ProfilePlan
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.plans import PlanStore
from sopflow.store.wecom_tags import CORP_TAGS, CorpTagId, CorpTags
from sopflow.wecom import api
from tests.helpers import describe, eventually, terminate
from tests.wecom_stack import WeComStack, fake_client, wecom_stack
from worker.wecom.client import WeComClient
from worker.wecom.tags import sync_tags
from workflows.client import describe_customer
from workflows.contracts import CustomerView

TAXONOMY = """
apiVersion: sopflow/v1
kind: TagTaxonomy
metadata: {name: t}
categories:
  behaviour:
    hesitation: {multi: true, tags: [haggling, comparing, stalling]}
    source_channel:
      source: event
      rules: [{event: contact.added, tag: "{{ event.data.channel_code }}"}]
  consumption:
    budget: {tags: [under_150k, 150k_300k]}
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: p}
enrol: {event: contact.added}
stages:
  s: {end: true}
"""


def profile() -> ProfilePlan:
    documents, problems = load_text(TAXONOMY, "t.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    assert bundle.profile is not None
    return bundle.profile


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom(FakeConfig())


@pytest.fixture
async def wecom(fake: FakeWeCom) -> AsyncIterator[WeComClient]:
    async with fake_client(fake) as client:
        yield client


def library(fake: FakeWeCom) -> dict[str, set[str]]:
    return {g.group_name: {t["name"] for t in g.tags.values()} for g in fake.tag_groups.values()}


async def test_sync_creates_only_what_is_missing_and_a_second_run_nothing(
    fake: FakeWeCom, wecom: WeComClient, tmp_path: Path
) -> None:
    store = CorpTags(Database.from_settings(Settings(home=tmp_path / "home")))
    # Staff made the budget group with one of its tags in WeCom already.
    made = await wecom.add_corp_tag(
        api.AddCorpTagRequest(group_name="budget", tag=[api.NewTag(name="under_150k")])
    )
    assert made.tag_group is not None
    existing_id = made.tag_group.tag[0].id

    first = await sync_tags(wecom, profile(), store)
    assert first.created_groups == ["hesitation"]
    assert sorted(first.created_tags) == [
        "budget:150k_300k",
        "hesitation:comparing",
        "hesitation:haggling",
        "hesitation:stalling",
    ]
    assert first.existing_tags == ["budget:under_150k"]
    assert list(first.skipped) == ["source_channel"]  # values come from events: none listed
    assert library(fake) == {
        "budget": {"under_150k", "150k_300k"},
        "hesitation": {"haggling", "comparing", "stalling"},
    }
    ids = store.ids(["budget:under_150k", "hesitation:stalling"])
    assert ids["budget:under_150k"] == existing_id
    assert ids["hesitation:stalling"] in {t for g in fake.tag_groups.values() for t in g.tags}

    calls = fake.calls["externalcontact/add_corp_tag"]
    second = await sync_tags(wecom, profile(), store)
    assert (second.created_groups, second.created_tags) == ([], [])
    assert len(second.existing_tags) == 5
    assert fake.calls["externalcontact/add_corp_tag"] == calls  # nothing asked of WeCom
    assert len(store.all()) == 5


# -- tag actions reach WeCom (mark_tag) -----------------------------------------------------

TAGGING = """
apiVersion: sopflow/v1
kind: TagTaxonomy
metadata: {name: t}
categories:
  behaviour:
    hesitation: {multi: true, tags: [haggling, comparing]}
  consumption:
    budget: {tags: [low, high]}
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: tagging}
enrol: {event: contact.added}
stages:
  s:
    on_enter: [{tag: {add: ["hesitation:haggling", "budget:low"]}}]
    triggers:
      - event: message.received
        actions: [{tag: {add: ["budget:high"], remove: ["hesitation:haggling"]}}]
"""


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[WeComStack]:
    async with wecom_stack(dev_env, settings, TAGGING) as running:
        yield running


def tag_entries(view: CustomerView) -> list[tuple[str, str, str | None, str | None]]:
    return [
        (e.kind, e.detail["tag"], e.status, e.error)
        for e in view.timeline
        if e.kind in ("tag_added", "tag_removed")
    ]


async def test_tag_actions_tag_the_customer_in_wecom_for_their_owner(stack: WeComStack) -> None:
    plans = PlanStore(stack.database)
    profile = plans.load_profile(plans.deployment().profile or "")
    await sync_tags(stack.wecom, profile, CorpTags(stack.database))
    ids = CorpTags(stack.database).ids(["hesitation:haggling", "budget:low", "budget:high"])
    await stack.deliver("add_external_contact", userid="li_lei", external_userid="wmTag1")

    async def marked() -> set[str]:
        return set(stack.fake.customer_tags[("li_lei", "wmTag1")])

    assert await eventually(lambda: _settled(stack, "wmTag1", 2)) == [
        ("tag_added", "hesitation:haggling", "delivered", None),
        ("tag_added", "budget:low", "delivered", None),
    ]
    assert await marked() == {ids["hesitation:haggling"], ids["budget:low"]}

    reply = {"customer_id": "wmTag1", "type": "message.received", "idempotency_key": "r1"}
    assert (await stack.http.post("/v1/events", json=reply)).status_code == 202
    # budget is single-valued: high replaces low, in sopflow and in WeCom.
    assert await eventually(lambda: _settled(stack, "wmTag1", 5)) == [
        ("tag_added", "hesitation:haggling", "delivered", None),
        ("tag_added", "budget:low", "delivered", None),
        ("tag_removed", "hesitation:haggling", "delivered", None),
        ("tag_removed", "budget:low", "delivered", None),
        ("tag_added", "budget:high", "delivered", None),
    ]

    async def moved() -> bool:
        return await marked() == {ids["budget:high"]}

    await eventually(moved)
    await terminate(stack.client, "wmTag1")


async def test_a_tag_wecom_cannot_take_is_recorded_failed_and_the_journey_goes_on(
    stack: WeComStack,
) -> None:
    # Not synced yet, and added through the API: no owner, no tag ids.
    added = {"customer_id": "wmTag2", "type": "contact.added", "idempotency_key": "a1"}
    assert (await stack.http.post("/v1/events", json=added)).status_code == 202
    entries = await eventually(lambda: _settled(stack, "wmTag2", 2))
    assert [(kind, tag, status) for kind, tag, status, _ in entries] == [
        ("tag_added", "hesitation:haggling", "failed"),
        ("tag_added", "budget:low", "failed"),
    ]
    assert entries[0][3] == (
        "hesitation:haggling not tagged in WeCom: the customer has no owner (attributes.owner)"
    )
    view = await describe(stack.client, "wmTag2")
    assert view.profile.tags == ["budget:low", "hesitation:haggling"]
    assert view.journeys[0].status == "active"
    assert stack.fake.calls["externalcontact/mark_tag"] == 0
    await terminate(stack.client, "wmTag2")


async def _settled(
    stack: WeComStack, customer: str, count: int
) -> list[tuple[str, str, str | None, str | None]]:
    """The tag entries once `count` of them exist and none is pending."""
    view = await describe_customer(stack.client, customer)
    entries = tag_entries(view) if view else []
    done = len(entries) == count and all(status != "pending" for _, _, status, _ in entries)
    return entries if done else []


async def test_staff_tag_edits_in_wecom_reach_the_profile_once_and_are_not_sent_back(
    stack: WeComStack,
) -> None:
    plans = PlanStore(stack.database)
    profile = plans.load_profile(plans.deployment().profile or "")
    await sync_tags(stack.wecom, profile, CorpTags(stack.database))
    ids = CorpTags(stack.database).ids(["hesitation:haggling", "hesitation:comparing"])
    await stack.deliver("add_external_contact", userid="li_lei", external_userid="wmEdit")
    await eventually(lambda: _settled(stack, "wmEdit", 2))
    marks = stack.fake.calls["externalcontact/mark_tag"]

    # In the WeCom client li_lei tags the customer "comparing" and untags "haggling";
    # WeCom's callback says only that li_lei edited them, and comes three times.
    deliveries = await stack.deliver(
        "edit_external_contact",
        userid="li_lei",
        external_userid="wmEdit",
        add_tag=[ids["hesitation:comparing"]],
        remove_tag=[ids["hesitation:haggling"]],
        repeat=3,
    )
    assert deliveries == [{"status": 200, "body": "success"}] * 3

    async def refreshed() -> list[str]:
        view = await describe(stack.client, "wmEdit")
        tags = sorted(view.profile.tags)
        return tags if tags == ["budget:low", "hesitation:comparing"] else []

    await eventually(refreshed)
    view = await describe(stack.client, "wmEdit")
    learnt = [
        (e.kind, e.detail["tag"], e.channel)
        for e in view.timeline
        if e.kind in ("tag_added", "tag_removed") and e.playbook is None
    ]
    assert learnt == [
        ("tag_added", "hesitation:comparing", None),
        ("tag_removed", "hesitation:haggling", None),
    ]
    assert stack.fake.calls["externalcontact/mark_tag"] == marks  # nothing sent back
    assert stack.fake.calls["externalcontact/get"] == 1  # one refresh for three deliveries
    await terminate(stack.client, "wmEdit")


def test_sync_tags_says_when_no_taxonomy_is_deployed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["wecom", "sync-tags", "--home", str(tmp_path / "home")])
    assert result.exit_code == 1
    assert "no TagTaxonomy is deployed: nothing to sync" in result.output


def test_a_sync_time_is_kept_as_utc_on_sqlite(tmp_path: Path) -> None:
    """SQLite keeps no offset: a plain DateTime handed back a naive time, which compared
    wrongly with aware ones; the read model's UtcDateTime stores and returns UTC."""
    database = Database.from_settings(Settings(home=tmp_path))
    before = datetime.now(UTC)
    CorpTags(database).record([CorpTagId(tag="consumption:under_150k", group_id="g", tag_id="t1")])
    with database.engine.connect() as connection:
        synced = connection.execute(select(CORP_TAGS.c.synced_at)).scalar_one()
    assert synced.tzinfo is not None and synced.utcoffset() == UTC.utcoffset(None)
    assert before <= synced <= datetime.now(UTC)
    database.dispose()
