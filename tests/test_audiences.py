"""Audiences in the language and the pure core: group chats and staff members are subjects
of their own, with their own context, channels, events, caps and journeys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from sopflow.core import sender
from sopflow.core.journey import apply_due_timers, apply_event
from sopflow.core.sender import QueuedSend, SenderPolicy, SenderState
from sopflow.core.state import CustomerEvent, CustomerState, StepResult
from sopflow.core.step import Catalog
from sopflow.language import Plan, PlaybookError, compile_playbook
from sopflow.language.compiler import compile_bundle, content_hash
from sopflow.language.loader import load_text
from sopflow.language.plan import ProfilePlan, TagGroupPlan
from sopflow.wecom.callbacks import parse_callback
from sopflow.wecom.group_callbacks import group_events
from tests.conftest import T0
from tests.test_wecom_protocol import MEMBERS_JOINED, chat_xml, contact_xml

HEADER = "apiVersion: sopflow/v1\nkind: Playbook\n"


def diagnostics_of(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        compile_playbook(HEADER + text, filename="pb.yaml")
    return [str(d) for d in caught.value.diagnostics if d.severity == "error"]


def plans_of(text: str) -> dict[str, Plan]:
    documents, problems = load_text(text, "pb.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    return bundle.plans


# --------------------------------------------------------------------------- language


def test_a_customer_playbook_cannot_send_to_a_group() -> None:
    assert diagnostics_of(
        """metadata: {name: p}
enrol: {event: contact.added}
stages:
  s:
    on_enter: [{send: {channel: wecom.group, text: hi}}]
    end: true
"""
    ) == [
        "pb.yaml:7:33: error: channel wecom.group cannot be used by a playbook with audience "
        "customer (log, webhook, wecom.private can): a group message goes in a playbook with "
        "`audience: group` (one message per group, not one per member) "
        "(at stages.s.on_enter[0].send.channel)"
    ]


def test_moments_belong_to_staff_playbooks_and_private_messages_to_customers() -> None:
    errors = diagnostics_of(
        """metadata: {name: p}
audience: group
enrol: {event: group.created}
stages:
  s:
    on_enter:
      - send: {channel: wecom.moments, text: hi}
      - send: {channel: wecom.private, text: hi}
    end: true
"""
    )
    assert [e.split(": error: ")[1].split(":")[0] for e in errors] == [
        "channel wecom.moments cannot be used by a playbook with audience group "
        "(log, webhook, wecom.group can)",
        "channel wecom.private cannot be used by a playbook with audience group "
        "(log, webhook, wecom.group can)",
    ]


def test_guards_and_templates_read_their_audiences_root() -> None:
    errors = diagnostics_of(
        """metadata: {name: p}
audience: group
enrol: {event: group.created, when: "customer.tier == 'vip'"}
stages:
  s:
    on_enter: [{send: {channel: wecom.group, text: "{{ customer.id }}"}}]
    triggers:
      - condition: "group.member_cnt > 1"
        goto: t
  t: {end: true}
"""
    )
    assert errors == [
        "pb.yaml:5:37: error: guard reads 'customer' cannot exist in a playbook with audience "
        "group: it reads 'group' (at enrol.when)",
        "pb.yaml:8:52: error: template variable 'customer' cannot exist in a playbook with "
        "audience group: it reads 'group' (at stages.s.on_enter[0].send.text)",
        "pb.yaml:10:20: error: unknown field 'group.member_cnt', did you mean "
        "'member_count'? (at stages.s.triggers[0].condition)",
    ]


def test_a_playbook_cannot_enrol_on_another_audiences_event() -> None:
    assert diagnostics_of(
        """metadata: {name: p}
audience: group
enrol: {event: contact.added}
stages:
  s: {end: true}
"""
    ) == [
        "pb.yaml:5:16: error: contact.added happens to a customer, never to a group: a "
        "playbook with audience group would enrol no one on it (at enrol.event)"
    ]


ENROLMENTS = """apiVersion: sopflow/v1
kind: Playbook
metadata: {name: calendar}
audience: group
enrol: {event: group.created}
stages:
  s:
    on_enter: [{enrol_member: welcome}]
    triggers:
      - event: group.member_joined
        actions: [{enrol_member: other_group}, {enrol: welcome}]
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: welcome}
enrol: {}
stages:
  w:
    on_enter: [{enrol_member: welcome}]
    end: true
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: other_group}
audience: group
enrol: {}
stages:
  o: {end: true}
"""


def test_enrol_member_needs_a_group_playbook_a_joining_member_and_a_customer_playbook() -> None:
    documents, problems = load_text(ENROLMENTS, "pb.yaml")
    bundle = compile_bundle(documents, problems)
    assert [str(d) for d in bundle.errors] == [
        "pb.yaml:8:31: error: enrol_member needs the member at hand: use it in the actions of "
        "a trigger on group.member_joined (at stages.s.on_enter[0].enrol_member)",
        "pb.yaml:11:34: error: playbook 'other_group' has audience group: enrol_member needs a "
        "playbook with audience customer (at stages.s.triggers[0].actions[0].enrol_member)",
        "pb.yaml:11:56: error: playbook 'welcome' has audience customer: enrol needs a "
        "playbook with audience group (at stages.s.triggers[0].actions[1].enrol)",
        "pb.yaml:19:31: error: enrol_member is for playbooks with audience group (it enrols "
        "the member who joined the group); use enrol here (at stages.w.on_enter[0].enrol_member)",
    ]


def test_visible_to_is_for_moments_posts_with_written_out_tags() -> None:
    errors = diagnostics_of(
        """metadata: {name: p}
audience: group
enrol: {event: group.created}
stages:
  s:
    on_enter:
      - send: {channel: wecom.group, text: hi, visible_to: ["budget:high"]}
    end: true
"""
    )
    assert errors == [
        "pb.yaml:9:60: error: visible_to is for wecom.moments posts (WeCom shows a post to "
        "customers by tag); a wecom.group message has its own recipients "
        "(at stages.s.on_enter[0].send.visible_to)"
    ]


def test_a_customer_playbook_keeps_its_version_and_other_audiences_have_their_own() -> None:
    text = """metadata: {name: p}
enrol: {event: contact.added}
stages:
  s:
    on_enter: [{send: {channel: log, text: hi}}]
    end: true
"""
    plan = compile_playbook(HEADER + text)
    explicit = compile_playbook(HEADER + "audience: customer\n" + text)
    assert plan.version == explicit.version
    # The hash a plan had before audiences existed: its dump without the audience key.
    before = plan.model_dump(mode="json", exclude={"version", "audience"})
    assert "audience" not in json.dumps(before) and plan.version == content_hash(plan)
    staff = compile_playbook(HEADER + "audience: staff\n" + text.replace("contact.added", "x.y"))
    assert staff.audience == "staff" and staff.version != plan.version


# --------------------------------------------------------------------------- core

GROUP_PLAYBOOKS = """apiVersion: sopflow/v1
kind: Playbook
metadata: {name: calendar}
audience: group
enrol: {event: group.created}
contact_policy: {max_per_day: 1}
stages:
  warm_up:
    triggers:
      - event: group.member_joined
        actions: [{enrol_member: welcome}]
      - condition: "group.member_count >= 2"
        actions: [{send: {channel: wecom.group, text: "满 {{ group.member_count }} 人"}}]
        goto: active
  active:
    triggers:
      - cron: "0 12 * * *"
        actions: [{send: {channel: wecom.group, text: "午餐"}}]
      - cron: "0 18 * * *"
        actions: [{send: {channel: wecom.group, text: "晚餐"}}]
      - event: campaign.announced
        actions: [{task: {id: prepare, title: "准备 {{ group.name }} 的活动", assignee: owner}}]
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: welcome}
enrol: {}
contact_policy: {max_per_day: 1}
stages:
  w:
    on_enter: [{send: {channel: wecom.private, text: "欢迎进群 {{ customer.groups }}"}}]
    triggers: [{after: 1d, goto: done}]
  done: {end: true}
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: announced}
enrol: {event: campaign.announced}
stages:
  a: {end: true}
"""


def catalog(plans: dict[str, Plan], profile: ProfilePlan | None = None) -> Catalog:
    return Catalog(
        plans={p.version: p for p in plans.values()},
        deployed={p.name: p.version for p in plans.values()},
        profile=profile,
    )


class Subject:
    """One subject's state, stepped event by event."""

    def __init__(self, subject_id: str, plans: dict[str, Plan], **catalog_args: Any) -> None:
        self.state = CustomerState(customer_id=subject_id)
        self.catalog = catalog(plans, **catalog_args)
        self.deliveries: list[Any] = []
        self.count = 0

    def event(self, kind: str, at: datetime, **data: Any) -> StepResult:
        self.count += 1
        event = CustomerEvent(
            customer_id=self.state.customer_id,
            type=kind,
            occurred_at=at,
            data=data,
            idempotency_key=f"k{self.count}",
        )
        result = apply_event(self.state, event, self.catalog, at)
        self.state = result.state
        self.deliveries += result.deliveries
        return result

    def until(self, at: datetime) -> None:
        result = apply_due_timers(self.state, self.catalog, at)
        self.state = result.state
        self.deliveries += result.deliveries

    def kinds(self, kind: str) -> list[Any]:
        return [e for e in self.state.timeline if e.kind == kind]


def test_a_group_learns_its_owner_and_members_and_a_threshold_moves_it_on() -> None:
    group = Subject("group/wr1", plans_of(GROUP_PLAYBOOKS))
    group.event("group.created", T0, owner="li_lei", name="午餐群")
    group.event("group.member_joined", T0 + timedelta(minutes=1), member="wm_1")
    group.event(
        "group.member_joined", T0 + timedelta(minutes=2), member="li_lei", member_type="staff"
    )
    assert group.state.journeys["calendar"].stage == "active"
    assert [m.text for m in group.kinds("message")] == ["满 2 人"]
    group.event("group.member_left", T0 + timedelta(minutes=3), member="wm_1")
    info = group.state.group
    assert info is not None and (info.owner, info.name, list(info.members)) == (
        "li_lei",
        "午餐群",
        ["li_lei"],
    )
    assert [e.detail["member"] for e in group.kinds("member_joined")] == ["wm_1", "li_lei"]
    assert [e.detail["member"] for e in group.kinds("member_left")] == ["wm_1"]


def test_a_joining_customer_is_enrolled_through_their_own_workflow_not_a_staff_member() -> None:
    group = Subject("group/wr1", plans_of(GROUP_PLAYBOOKS))
    group.event("group.created", T0, owner="li_lei")
    group.event("group.member_joined", T0)  # no member named: recorded, nothing sent
    assert group.kinds("send_failed")[-1].error == (
        "enrol_member welcome: no member at hand (data.member of group.member_joined)"
    )
    group.event("group.member_joined", T0, member="wm_1")
    group.event("group.member_joined", T0, member="li_lei", member_type="staff")
    [enrolment] = [d for d in group.deliveries if d.kind == "enrolment"]
    assert (enrolment.channel, enrolment.target, enrolment.text) == (
        "enrolment",
        "wm_1",
        "welcome",
    )
    assert [e.detail for e in group.kinds("member_enrolled")] == [
        {"member": "wm_1", "playbook": "welcome"}
    ]


def test_group_sends_go_out_from_the_owner_and_caps_count_per_group_per_day() -> None:
    plans = plans_of(GROUP_PLAYBOOKS)
    group = Subject("group/wr1", plans)
    group.event("group.created", T0, owner="li_lei", name="午餐群")
    group.event("group.member_joined", T0, member="wm_1")
    group.event("group.member_joined", T0, member="wm_2")  # 满 2 人: today's one message
    group.until(T0 + timedelta(days=1, hours=12))
    sent = [(e.at - T0, e.text) for e in group.kinds("message")]
    suppressed = [e.text for e in group.kinds("suppressed")]
    # T0 is 17:00 in Shanghai: 18:00 is capped (the threshold message used the day's one),
    # then one a day: 12:00 sent, 18:00 capped.
    assert sent == [(timedelta(0), "满 2 人"), (timedelta(hours=19), "午餐")]
    assert suppressed == ["晚餐", "晚餐"]
    assert {d.sender for d in group.deliveries if d.channel == "wecom.group"} == {"li_lei"}
    # A member's own 1:1 cap is theirs: the group's messages never count against it.
    member = Subject("wm_1", plans)
    member.event("group.joined", T0, chat_id="wr1")
    member.event("enrolment.requested", T0, playbook="welcome", chat_id="wr1")
    assert [e.text for e in member.kinds("message")] == ["欢迎进群 ['wr1']"]


def test_a_customer_learns_their_groups_and_an_enrolment_request_names_a_playbook() -> None:
    customer = Subject("wm_1", plans_of(GROUP_PLAYBOOKS))
    customer.event("group.joined", T0, chat_id="wr1")
    customer.event("group.joined", T0, chat_id="wr2")
    customer.event("group.left", T0, chat_id="wr1")
    assert customer.state.profile.groups == ["wr2"]
    customer.event("enrolment.requested", T0, playbook="calendar")  # a group's playbook
    customer.event("enrolment.requested", T0, playbook="nowhere")
    assert customer.state.journeys == {}
    assert customer.kinds("send_failed")[-1].error == (
        "enrolment requested in 'nowhere', which is not deployed"
    )
    customer.event("enrolment.requested", T0, playbook="welcome")
    assert list(customer.state.journeys) == ["welcome"]


def test_an_event_enrols_only_its_subjects_audience_and_owner_tasks_go_to_the_group_owner() -> None:
    plans = plans_of(GROUP_PLAYBOOKS)
    group = Subject("group/wr1", plans)
    group.event("group.created", T0, owner="li_lei", name="午餐群")
    group.event("group.member_joined", T0, member="wm_1")
    group.event("group.member_joined", T0, member="wm_2")
    group.event("campaign.announced", T0 + timedelta(hours=1))
    assert sorted(group.state.journeys) == ["calendar"]  # `announced` is a customer playbook
    [task] = group.kinds("task_created")
    assert (task.detail["assignee"], task.text) == ("li_lei", "准备 午餐群 的活动")
    customer = Subject("wm_1", plans)
    customer.event("group.created", T0, owner="li_lei")
    assert customer.state.journeys == {}  # a group's event enrols no customer


def test_a_dismissed_group_ends_its_journeys_and_its_tags_are_its_own() -> None:
    profile = ProfilePlan(
        version="v",
        groups={
            "intent": TagGroupPlan(category="c", multi=False, source="manual", values=("hot",))
        },
    )
    group = Subject("group/wr1", plans_of(GROUP_PLAYBOOKS), profile=profile)
    group.event("group.created", T0, owner="li_lei")
    group.event("tag.added", T0, tag="topic:lunch")  # not in the customers' taxonomy
    assert group.state.profile.tags == ["topic:lunch"]
    group.event("group.dismissed", T0 + timedelta(hours=1))
    journey = group.state.journeys["calendar"]
    assert (journey.status, journey.end_reason) == ("ended", "the group chat was dismissed")


def test_a_staff_members_moments_go_out_from_them() -> None:
    plans = plans_of(
        """apiVersion: sopflow/v1
kind: Playbook
metadata: {name: moments}
audience: staff
enrol: {event: offer.announced}
stages:
  s:
    on_enter:
      - send: {channel: wecom.moments, text: "本月权益", visible_to: ["budget:high"]}
      - task: {id: shoot, title: "拍素材 {{ staff.id }}", assignee: owner}
    end: true
"""
    )
    staff = Subject("staff/li_lei", plans)
    result = staff.event("offer.announced", T0)
    moment, task = result.deliveries
    assert (moment.channel, moment.sender, moment.visible_to) == (
        "wecom.moments",
        "li_lei",
        ["budget:high"],
    )
    assert (task.assignee, task.text) == ("li_lei", "拍素材 li_lei")


# --------------------------------------------------------------------------- sender core


def send(key: str, subject: str, text: str, chat_type: Any = "single") -> QueuedSend:
    return QueuedSend(
        idempotency_key=key, customer_id=subject, text=text, queued_at=T0, chat_type=chat_type
    )


def test_an_owners_groups_share_one_task_per_text_and_a_moment_needs_no_window() -> None:
    state = SenderState(sender="li_lei")
    for chat in ("wr1", "wr2", "wr3"):
        sender.enqueue(state, send(f"group/{chat}/k", f"group/{chat}", "午餐", "group"), T0)
    sender.enqueue(state, send("wm_1/k", "wm_1", "午餐"), T0)  # a customer: its own task
    sender.enqueue(state, send("staff/li_lei/k", "staff/li_lei", "午餐", "moment"), T0)
    policy = SenderPolicy()
    [moment] = sender.due_batches(state, policy, T0)
    assert (moment.chat_type, [s.customer_id for s in moment.sends]) == (
        "moment",
        ["staff/li_lei"],
    )
    later = sender.due_batches(state, policy, T0 + timedelta(seconds=60))
    assert sorted((b.chat_type, len(b.sends)) for b in later) == [
        ("group", 3),
        ("moment", 1),
        ("single", 1),
    ]
    group = next(b for b in later if b.chat_type == "group")
    outcomes = sender.close_batch(state, group, "msg1", {"group/wr3": "not its owner"}, policy, T0)
    assert [(o.customer_id, o.status, o.batch_id) for o in outcomes] == [
        ("group/wr1", "awaiting_confirmation", group.batch_id),
        ("group/wr2", "awaiting_confirmation", group.batch_id),
        ("group/wr3", "failed", group.batch_id),
    ]
    assert state.tasks[group.batch_id].chat_type == "group"


def test_more_groups_than_one_task_holds_make_several_tasks() -> None:
    policy = SenderPolicy(max_groups_per_task=2)
    state = SenderState(sender="li_lei")
    for chat in ("wr1", "wr2", "wr3", "wr4", "wr5"):
        sender.enqueue(state, send(f"group/{chat}/k", f"group/{chat}", "午餐", "group"), T0, policy)
    due = sender.due_batches(state, policy, T0)  # the full ones do not wait for the window
    assert [[s.customer_id for s in b.sends] for b in due] == [
        ["group/wr1", "group/wr2"],
        ["group/wr3", "group/wr4"],
    ]
    assert len({b.batch_id for b in state.batches.values()}) == 3
    for batch in due:
        sender.close_batch(state, batch, f"msg-{batch.batch_id}", {}, policy, T0)
    [left] = state.batches.values()
    assert [s.customer_id for s in left.sends] == ["group/wr5"]


def test_a_moment_not_published_gets_one_reminder() -> None:
    policy = SenderPolicy(remind_after_seconds=3600)
    state = SenderState(sender="li_lei")
    sender.enqueue(state, send("k", "staff/li_lei", "post", "moment"), T0)
    [batch] = sender.due_batches(state, policy, T0)
    sender.close_batch(state, batch, "job1", {}, policy, T0)
    [task] = state.tasks.values()
    assert sender.next_reminder_at(task, policy) == T0 + timedelta(hours=1)
    task.reminded_at.append(T0 + timedelta(hours=1))
    assert sender.next_reminder_at(task, policy) is None


# --------------------------------------------------------------------------- callbacks


def test_chat_callbacks_become_the_groups_own_events() -> None:
    joined = group_events(parse_callback(MEMBERS_JOINED))
    assert [(e.customer_id, e.type, e.data) for e in joined] == [
        (
            "group/wrCHAT1",
            "group.member_joined",
            {"member": "lisi", "member_type": "staff", "join_scene": 3},
        ),
        (
            "group/wrCHAT1",
            "group.member_joined",
            {"member": "wmCUSTOMER1", "member_type": "customer", "join_scene": 3},
        ),
        (
            "group/wrCHAT1",
            "group.member_joined",
            {"member": "woOTHERCORP", "member_type": "customer", "join_scene": 3},
        ),
    ]
    assert len({e.idempotency_key for e in joined}) == 3
    # Every delivery of one callback names the same events: WeCom's retries act once.
    assert [e.idempotency_key for e in group_events(parse_callback(MEMBERS_JOINED))] == [
        e.idempotency_key for e in joined
    ]
    left = group_events(parse_callback(MEMBERS_JOINED.replace("add_member", "del_member")))
    assert [(e.type, e.data["member"]) for e in left] == [
        ("group.member_left", "lisi"),
        ("group.member_left", "wmCUSTOMER1"),
        ("group.member_left", "woOTHERCORP"),
    ]
    assert [e.type for e in group_events(parse_callback(chat_xml("create")))] == ["group.created"]
    assert [e.type for e in group_events(parse_callback(chat_xml("dismiss")))] == [
        "group.dismissed"
    ]
    renamed = group_events(
        parse_callback(chat_xml("update", "<UpdateDetail>change_name</UpdateDetail>"))
    )
    assert [(e.type, e.data) for e in renamed] == [
        ("group.updated", {"update_detail": "change_name"})
    ]
    assert group_events(parse_callback(contact_xml("edit_external_contact"))) == []
