"""The corp tag library in step with the taxonomy (sync-tags), against the fake WeCom."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cli.fake_wecom import DEV_CORP_ID, DEV_SECRET, FakeConfig, FakeWeCom, create_app
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.language.plan import ProfilePlan
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.wecom_tags import CorpTags
from sopflow.wecom import api
from worker.wecom.client import WeComClient
from worker.wecom.tags import sync_tags

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
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        yield WeComClient(
            DEV_CORP_ID,
            DEV_SECRET,
            api_base="http://fake/cgi-bin",
            requests_per_second=1e4,
            http=http,
        )


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
