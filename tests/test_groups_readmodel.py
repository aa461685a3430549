"""Groups and moments in the read model (SQLite and PostgreSQL): a group's chat row and
members projected from its journey ledger, once each; the lists and the metrics of a
group playbook; moments posts per staff member; the fake WeCom's group and moment APIs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from cli.fake_wecom import DEV_CORP_ID, DEV_SECRET, FakeConfig, FakeWeCom, create_app
from sopflow.core.state import CustomerEvent, TimelineEntry
from sopflow.settings import Settings
from sopflow.store.acquisitions import record_events
from sopflow.store.database import Database
from sopflow.store.groups import group_members, group_playbook_metrics, list_groups
from sopflow.store.ledger import Ledger
from sopflow.store.moments import Moments
from sopflow.wecom import api
from tests.conftest import T0
from worker.wecom.client import WeComClient


class Timeline:
    """A subject's timeline entries, numbered as the core numbers them."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: Any, minutes: int, **fields: Any) -> TimelineEntry:
        self.seq += 1
        return TimelineEntry(at=T0 + timedelta(minutes=minutes), kind=kind, seq=self.seq, **fields)


def message(
    timeline: Timeline, minutes: int, key: str, playbook: str = "calendar"
) -> TimelineEntry:
    return timeline(
        "message",
        minutes,
        playbook=playbook,
        stage="active",
        channel="wecom.group",
        text=f"消息 {key}",
        idempotency_key=key,
    )


def joined(timeline: Timeline, minutes: int, member: str, member_type: str = "customer") -> Any:
    return timeline("member_joined", minutes, detail={"member": member, "member_type": member_type})


def test_a_groups_timeline_becomes_its_row_and_members_once(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    ledger = Ledger(database)
    t = Timeline()
    first = [
        t("group_updated", 0, detail={"owner": "li_lei", "name": "午餐群"}),
        t("enrolled", 0, playbook="calendar", stage="warm_up"),
        t("stage_entered", 0, playbook="calendar", stage="warm_up"),
        joined(t, 1, "wm_1"),
        message(t, 2, "group/wr1/calendar#1/1"),
        joined(t, 3, "wm_2"),
        joined(t, 4, "li_lei", "staff"),
        t("tag_added", 5, detail={"tag": "topic:lunch"}),
    ]
    ledger.record_timeline("group/wr1", first)
    ledger.record_timeline("group/wr1", first)  # a retried write changes nothing
    later = [
        message(t, 10, "group/wr1/calendar#1/2"),
        t("member_left", 11, detail={"member": "wm_2"}),
        t("stage_entered", 12, playbook="calendar", stage="active"),
    ]
    ledger.record_timeline("group/wr1", later)
    ledger.record_timeline("group/wr2", [t("group_updated", 0, detail={"owner": "han_meimei"})])

    [group] = list_groups(database, owner="li_lei")
    assert (group.chat_id, group.name, group.member_count, group.tags, group.stages) == (
        "wr1",
        "午餐群",
        2,
        ["topic:lunch"],
        ["calendar:active"],
    )
    assert [g.chat_id for g in list_groups(database)] == ["wr1", "wr2"]
    assert [g.chat_id for g in list_groups(database, tag="topic:lunch")] == ["wr1"]
    assert [g.chat_id for g in list_groups(database, stage="calendar:active")] == ["wr1"]
    assert [g.chat_id for g in list_groups(database, stage="calendar")] == ["wr1"]
    assert list_groups(database, stage="calendar:warm_up") == []
    members = {m.member_id: m for m in group_members(database, "wr1")}
    assert {k: (m.status, m.joined_after) for k, m in members.items()} == {
        "wm_1": ("member", None),
        "wm_2": ("left", "group/wr1/calendar#1/1"),
        "li_lei": ("member", "group/wr1/calendar#1/1"),
    }
    assert [m.member_id for m in group_members(database, "wr1", status="left")] == ["wm_2"]
    database.dispose()


def test_a_group_playbooks_metrics_count_joins_leaves_and_conversions(
    database_settings: Settings,
) -> None:
    database = Database.from_settings(database_settings)
    ledger = Ledger(database)
    t = Timeline()
    ledger.record_timeline(
        "group/wr1",
        [
            t("group_updated", 0, detail={"owner": "li_lei"}),
            t("enrolled", 0, playbook="calendar", stage="active"),
            message(t, 10, "m1"),
            joined(t, 11, "wm_1"),
            joined(t, 12, "wm_2"),
            joined(t, 13, "li_lei", "staff"),
            message(t, 20, "m2"),
            joined(t, 21, "wm_3"),
            t("member_left", 22, detail={"member": "wm_1"}),
            message(t, 30, "other", playbook="someone_else"),
            joined(t, 31, "wm_4"),
        ],
    )
    # wm_2 ordered after joining; wm_3 reached a goal of their own journey.
    record_events(
        database,
        [
            CustomerEvent(
                customer_id="wm_2",
                type="order.paid",
                occurred_at=T0 + timedelta(hours=1),
                data={"amount": 39},
                idempotency_key="o1",
            )
        ],
        "Asia/Shanghai",
    )
    ledger.record_timeline(
        "wm_3", [TimelineEntry(at=T0 + timedelta(hours=2), kind="goal_reached", seq=1)]
    )
    metrics = group_playbook_metrics(database, "calendar")
    assert (metrics.groups, metrics.messages) == (1, 2)
    assert [(m.idempotency_key, m.joined_after, m.left_after) for m in metrics.recent] == [
        ("m2", 1, 1),
        ("m1", 3, 0),
    ]
    # Joined through it: wm_1, wm_2, wm_3 (customers after its messages; wm_4 came after
    # another playbook's message); converted: wm_2 (an order) and wm_3 (a goal).
    assert (metrics.joined_through, metrics.converted, metrics.conversion_rate) == (3, 2, 0.6667)
    database.dispose()


def test_moments_posts_keep_their_final_state(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    moments = Moments(database)
    moments.record("b1", "li_lei", "本月权益", ["budget:high"], "job1", None, T0)
    moments.record("b2", "li_lei", "第二条", None, "", "WeCom refused the post: 41089", T0)
    moments.record("b3", "han_meimei", "其他", None, "job3", None, T0)
    moments.set_state("b1", "overdue", "not published by its deadline", T0)
    moments.set_state("b1", "published", None, T0 + timedelta(hours=5))
    moments.set_state("b1", "expired", "late report")  # a final state is never left
    posts = {p.batch_id: p for p in moments.posts("li_lei")}
    assert {k: p.status for k, p in posts.items()} == {"b1": "published", "b2": "failed"}
    assert posts["b1"].reminded_at == T0 and posts["b1"].published_at == T0 + timedelta(hours=5)
    assert [p.batch_id for p in moments.posts(status="awaiting_publication")] == ["b3"]
    database.dispose()


async def test_the_fake_tells_a_groups_owner_and_who_published_a_moment() -> None:
    fake = FakeWeCom(FakeConfig())
    fake.add_chat("wr1", "li_lei", ["wm_1", "li_lei"], "午餐群")
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        wecom = WeComClient(DEV_CORP_ID, DEV_SECRET, api_base="http://fake/cgi-bin", http=http)
        chat = await wecom.get_group_chat("wr1")
        assert (chat.owner, chat.name, [(m.userid, m.type) for m in chat.member_list]) == (
            "li_lei",
            "午餐群",
            [("wm_1", 2), ("li_lei", 1)],
        )
        job = await wecom.add_moment_task(
            api.AddMomentTaskRequest(
                text=api.Text(content="本月权益"),
                visible_range=api.VisibleRange(sender_list=api.SenderList(user_list=["li_lei"])),
            )
        )
        published = await http.post(
            f"http://fake/_fake/moments/{job.jobid}/publish", json={"userid": "li_lei"}
        )
        assert published.status_code == 200
        refused = await http.post(
            f"http://fake/_fake/moments/{job.jobid}/publish", json={"userid": "han_meimei"}
        )
        assert refused.status_code == 409
        await wecom.get_moment_task_result(job.jobid)  # the first poll: still running
        result = await wecom.get_moment_task_result(job.jobid)
        assert result.result is not None and result.result.moment_id
        assert await wecom.moment_publishers(result.result.moment_id) == {"li_lei": True}
        await wecom.cancel_moment_task(result.result.moment_id)
        assert fake.snapshot()["moments"][0]["cancelled"] is True
