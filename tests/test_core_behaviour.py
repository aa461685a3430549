"""The journey core's rules, each pinned by a small scenario on the virtual clock."""

from datetime import UTC, datetime, timedelta

from sopflow.core import simulator
from sopflow.core.journey import apply_event
from sopflow.core.state import CustomerEvent, CustomerState, TimelineEntry
from sopflow.core.step import Catalog
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from tests.conftest import WELCOME

START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai, a Monday


def run(documents: str, events: list[dict], days: int = 30) -> list[TimelineEntry]:
    found, problems = load_text(documents, "test.yaml")
    bundle = compile_bundle(found, problems)
    bundle.raise_on_errors()
    scenario = simulator.parse_events(events, START)
    return simulator.simulate(bundle.plans, bundle.profile, scenario, START, days)


def what(timeline: list[TimelineEntry], *kinds: str) -> list[tuple]:
    return [
        (e.kind, e.playbook, e.stage, e.text, (e.at - START)) for e in timeline if e.kind in kinds
    ]


def playbook(name: str, body: str, enrol: str = "contact.added", extra: str = "") -> str:
    return (
        f"apiVersion: sopflow/v1\nkind: Playbook\nmetadata: {{name: {name}}}\n"
        f"enrol: {{event: {enrol}}}\n{extra}stages:\n{body}"
    )


ONE_MESSAGE = """\
  hello:
    on_enter: [{send: {channel: wecom.private, text: "%s"}}]
    triggers: [{after: 10d, goto: done}]
  done: {end: true}
"""


def test_a_daily_cap_is_shared_by_every_journey_of_the_customer() -> None:
    capped = "contact_policy: {max_per_day: 1}\n"
    documents = "---\n".join(
        [
            playbook("coupons", ONE_MESSAGE % "新人券", extra=capped),
            playbook("welcome", ONE_MESSAGE % "欢迎", extra=capped),
        ]
    )
    timeline = run(documents, [{"after": "0s", "type": "contact.added"}], days=2)
    assert what(timeline, "message", "suppressed") == [
        ("message", "coupons", "hello", "新人券", timedelta(0)),
        ("suppressed", "welcome", "hello", "欢迎", timedelta(0)),
    ]
    suppressed = next(e for e in timeline if e.kind == "suppressed")
    assert suppressed.error == "daily cap of 1 messages reached"


def test_a_weekly_cap_counts_the_last_seven_days() -> None:
    body = """\
  daily:
    triggers:
      - every: 1d
        actions: [{send: {channel: wecom.private, text: tip}}]
      - after: 9d
        goto: done
  done: {end: true}
"""
    timeline = run(
        playbook("tips", body, extra="contact_policy: {max_per_week: 3}\n"),
        [{"after": "0s", "type": "contact.added"}],
        days=10,
    )
    sent = [(e.at - START).days for e in timeline if e.kind == "message"]
    suppressed = [(e.at - START).days for e in timeline if e.kind == "suppressed"]
    # Rolling seven days: by day 8 the day-1 send has left the window, by day 9 day 2's.
    assert sent == [1, 2, 3, 8, 9]
    assert suppressed == [4, 5, 6, 7]


def test_a_late_event_acts_at_its_own_time_before_later_timers() -> None:
    found, _ = load_text(WELCOME.read_text(encoding="utf-8"), "welcome.yaml")
    plan = compile_bundle(found, []).plans["welcome"]
    catalog = Catalog(plans={plan.version: plan}, deployed={"welcome": plan.version})
    added = CustomerEvent(
        customer_id="c", type="contact.added", occurred_at=START, idempotency_key="a"
    )
    state = apply_event(CustomerState(customer_id="c"), added, catalog, START).state
    # The reply happened on day 2 but reaches the workflow on day 4, after the day-3 timer
    # was due: the reply wins, as it did in the customer's world.
    reply = CustomerEvent(
        customer_id="c",
        type="message.received",
        occurred_at=START + timedelta(days=2),
        idempotency_key="r",
    )
    state = apply_event(state, reply, catalog, START + timedelta(days=4)).state
    stages = [(e.stage, e.at - START) for e in state.timeline if e.kind == "stage_entered"]
    assert stages == [("icebreak", timedelta(0)), ("engaged", timedelta(days=2))]


def test_an_event_from_the_future_acts_now() -> None:
    found, _ = load_text(WELCOME.read_text(encoding="utf-8"), "welcome.yaml")
    plan = compile_bundle(found, []).plans["welcome"]
    catalog = Catalog(plans={plan.version: plan}, deployed={"welcome": plan.version})
    future = CustomerEvent(
        customer_id="c",
        type="contact.added",
        occurred_at=START + timedelta(days=30),
        idempotency_key="f",
    )
    state = apply_event(CustomerState(customer_id="c"), future, catalog, START).state
    assert state.journeys["welcome"].enrolled_at == START


def test_postponing_a_task_moves_its_escalation() -> None:
    body = """\
  calling:
    on_enter:
      - task: {id: call, title: Call, assignee: "staff:li", due: 1d, escalate_to: "staff:lead"}
    triggers: [{after: 10d, goto: done}]
  done: {end: true}
"""
    timeline = run(
        playbook("calls", body),
        [
            {"after": "0s", "type": "contact.added"},
            {"after": "12h", "type": "task.postponed", "data": {"task": "call", "by": "2d"}},
        ],
        days=5,
    )
    escalated = [e for e in timeline if e.kind == "task_escalated"]
    assert [(e.at - START) for e in escalated] == [timedelta(days=3)]
    assert escalated[0].detail["escalated_to"] == "lead"


def test_reentry_always_starts_a_fresh_journey_with_fresh_keys() -> None:
    body = """\
  hello:
    on_enter: [{send: {channel: log, text: hi}}]
    end: true
"""
    extra = ""
    text = playbook("again", body, extra=extra).replace(
        "enrol: {event: contact.added}", "enrol: {event: contact.added, reentry: always}"
    )
    timeline = run(
        text,
        [{"after": "0s", "type": "contact.added"}, {"after": "1d", "type": "contact.added"}],
        days=3,
    )
    keys = [e.idempotency_key for e in timeline if e.kind == "message"]
    assert keys == ["sim-customer/again#1/1", "sim-customer/again#2/1"]


def test_an_exit_condition_ends_the_journey_from_any_stage() -> None:
    extra = "exit:\n  - when: \"'status:unsubscribed' in customer.tags\"\n"
    timeline = run(
        playbook("news", ONE_MESSAGE % "news", extra=extra),
        [
            {"after": "0s", "type": "contact.added"},
            {"after": "1d", "type": "tag.added", "data": {"tag": "status:unsubscribed"}},
        ],
        days=20,
    )
    ended = [e for e in timeline if e.kind == "journey_ended"]
    assert [(e.stage, e.detail["reason"], e.at - START) for e in ended] == [
        ("hello", "exit condition met", timedelta(days=1))
    ]


def test_day_n_uses_the_customers_own_time_zone() -> None:
    body = """\
  sequence:
    triggers:
      - day: 1
        time: "10:00"
        actions: [{send: {channel: log, text: day one}}]
        goto: done
  done: {end: true}
"""
    timeline = run(
        playbook("tz", body),
        [{"after": "0s", "type": "contact.added", "data": {"timezone": "Europe/Paris"}}],
    )
    [message] = [e for e in timeline if e.kind == "message"]
    # Added Monday 02:00 in Paris; day 1 at 10:00 Paris is Tuesday 09:00 UTC.
    assert message.at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_a_deferred_message_is_dropped_when_its_journey_ends_first() -> None:
    body = """\
  quiet:
    on_enter: [{send: {channel: wecom.private, text: later}}]
    triggers: [{event: order.paid, goto: done}]
  done: {end: true}
"""
    extra = 'contact_policy: {quiet_hours: "21:00-09:00"}\n'
    timeline = run(
        playbook("q", body, extra=extra),
        [
            {"after": "13h", "type": "contact.added"},  # 22:00 local: quiet
            {"after": "14h", "type": "order.paid"},  # the goal is met before 09:00
        ],
        days=2,
    )
    assert [e.kind for e in timeline if e.kind in ("deferred", "message")] == ["deferred"]


def test_a_template_that_fails_at_run_time_is_recorded_and_the_journey_goes_on() -> None:
    body = """\
  hello:
    on_enter:
      - send: {channel: log, text: "Hi {{ customer.attributes.nickname }}"}
      - send: {channel: log, text: "second"}
    triggers: [{after: 1d, goto: done}]
  done: {end: true}
"""
    timeline = run(playbook("names", body), [{"after": "0s", "type": "contact.added"}], days=2)
    failed = [e for e in timeline if e.kind == "send_failed"]
    assert len(failed) == 1 and "nickname" in (failed[0].error or "")
    assert [e.text for e in timeline if e.kind == "message"] == ["second"]
    assert timeline[-1].kind == "journey_ended"


def test_a_guard_reading_a_missing_attribute_is_false() -> None:
    body = """\
  waiting:
    triggers:
      - event: order.paid
        when: "customer.attributes.vip == true"
        goto: vip
      - event: order.paid
        goto: regular
  vip: {end: true}
  regular: {end: true}
"""
    timeline = run(
        playbook("orders", body),
        [{"after": "0s", "type": "contact.added"}, {"after": "1h", "type": "order.paid"}],
    )
    assert [e.stage for e in timeline if e.kind == "stage_entered"] == ["waiting", "regular"]


TAXONOMY = """\
apiVersion: sopflow/v1
kind: TagTaxonomy
metadata: {name: t}
categories:
  profile:
    skin_type:
      source: event
      tags: [dry, oily]
      rules: [{event: quiz.completed, tag: "{{ event.data.skin }}"}]
    interest: {multi: true, tags: [lipstick, serum]}
---
"""


def test_event_rules_tag_single_valued_groups_replace_and_unknown_values_are_rejected() -> None:
    documents = TAXONOMY + playbook("p", ONE_MESSAGE % "x")
    timeline = run(
        documents,
        [
            {"after": "0s", "type": "quiz.completed", "data": {"skin": "dry"}},
            {"after": "1h", "type": "quiz.completed", "data": {"skin": "oily"}},
            {"after": "2h", "type": "quiz.completed", "data": {"skin": "scaly"}},
            {"after": "3h", "type": "tag.added", "data": {"tag": "interest:serum"}},
            {"after": "4h", "type": "tag.added", "data": {"tag": "interest:lipstick"}},
        ],
        days=1,
    )
    changes = [(e.kind, e.detail["tag"]) for e in timeline if e.kind.startswith("tag_")]
    assert changes == [
        ("tag_added", "skin_type:dry"),
        ("tag_removed", "skin_type:dry"),
        ("tag_added", "skin_type:oily"),
        ("tag_rejected", "skin_type:scaly"),
        ("tag_added", "interest:serum"),
        ("tag_added", "interest:lipstick"),
    ]


def test_a_condition_fires_each_time_it_becomes_true() -> None:
    body = """\
  watching:
    triggers:
      - condition: "'intent:hot' in customer.tags"
        actions: [{send: {channel: webhook, text: hot}}]
      - after: 20d
        goto: done
  done: {end: true}
"""
    timeline = run(
        playbook("w", body),
        [
            {"after": "0s", "type": "contact.added"},
            {"after": "1d", "type": "tag.added", "data": {"tag": "intent:hot"}},
            {"after": "2d", "type": "message.received"},  # still hot: no second firing
            {"after": "3d", "type": "tag.removed", "data": {"tag": "intent:hot"}},
            {"after": "4d", "type": "tag.added", "data": {"tag": "intent:hot"}},
        ],
    )
    assert [(e.at - START).days for e in timeline if e.kind == "message"] == [1, 4]


def test_a_wait_that_got_its_event_never_times_out() -> None:
    body = """\
  waiting:
    triggers:
      - wait_for: deposit.paid
        timeout: 2d
        actions: [{set_journey: {paid: "yes"}}]
        on_timeout: {actions: [{send: {channel: log, text: too late}}]}
      - after: 5d
        goto: done
  done: {end: true}
"""
    timeline = run(
        playbook("w", body),
        [{"after": "0s", "type": "contact.added"}, {"after": "1d", "type": "deposit.paid"}],
        days=6,
    )
    assert [e.kind for e in timeline if e.kind in ("message", "attribute_set")] == ["attribute_set"]


def test_a_migration_keeps_the_place_and_never_refires_a_past_moment() -> None:
    from sopflow.core.migration import apply_migration
    from sopflow.core.state import MigrationOrder

    v1_text = playbook(
        "seq",
        """\
  days:
    triggers:
      - day: 1
        time: "10:00"
        actions: [{send: {channel: log, text: day one}}]
      - after: 30d
        goto: done
  done: {end: true}
""",
    )
    found, _ = load_text(v1_text, "v1.yaml")
    v1 = compile_bundle(found, []).plans["seq"]
    v2_text = v1_text.replace("day one", "day one v2").replace(
        "stages:", f'migrations: [{{from: "{v1.version}", stages: {{}}}}]\nstages:'
    )
    found, _ = load_text(v2_text, "v2.yaml")
    v2 = compile_bundle(found, []).plans["seq"]
    catalog = Catalog(plans={v1.version: v1, v2.version: v2}, deployed={"seq": v1.version})
    added = CustomerEvent(
        customer_id="c", type="contact.added", occurred_at=START, idempotency_key="a"
    )
    state = apply_event(CustomerState(customer_id="c"), added, catalog, START).state
    from sopflow.core.journey import apply_due_timers

    state = apply_due_timers(state, catalog, START + timedelta(days=2)).state  # day 1 sent
    order = MigrationOrder(playbook="seq", from_version=v1.version, to_version=v2.version)
    state = apply_migration(state, order, catalog, START + timedelta(days=2)).state
    state = apply_due_timers(state, catalog, START + timedelta(days=5)).state
    assert [e.text for e in state.timeline if e.kind == "message"] == ["day one"]
    assert state.journeys["seq"].version == v2.version
    # A second, identical order finds the journey moved already and does nothing.
    again = apply_migration(state, order, catalog, START + timedelta(days=5)).state
    assert again.timeline == state.timeline


def test_a_guard_that_cannot_be_evaluated_is_false_and_recorded_once_per_error() -> None:
    # The attribute does not exist until a form sets it: the condition is evaluated after
    # every event, fails the same way each time, and the timeline says so once.
    documents = playbook(
        "vip",
        """\
  waiting:
    triggers:
      - condition: "customer.attributes.spend > 100"
        goto: vip
  vip: {end: true}
""",
    )
    events = [{"after": "0s", "type": "contact.added"}] + [
        {"after": f"{hour}h", "type": "message.received"} for hour in range(1, 4)
    ]
    events.append({"after": "5h", "type": "form.submitted", "data": {"attributes": {"spend": 500}}})
    timeline = run(documents, events, days=1)
    failures = [e for e in timeline if e.kind == "guard_failed"]
    assert len(failures) == 1
    assert failures[0].detail == {"guard": "customer.attributes.spend > 100"}
    assert "spend" in (failures[0].error or "")
    assert what(timeline, "stage_entered")[-1][2] == "vip"


def test_guard_failures_are_counted_and_cleared_when_the_guard_evaluates() -> None:
    found, problems = load_text(
        playbook(
            "vip",
            """\
  waiting:
    triggers:
      - condition: "customer.attributes.spend > 100"
        goto: vip
  vip: {end: true}
""",
        ),
        "test.yaml",
    )
    bundle = compile_bundle(found, problems)
    [plan] = bundle.plans.values()
    catalog = Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})
    state = CustomerState(customer_id="c")
    for index, (kind, data) in enumerate(
        [
            ("contact.added", {}),
            ("message.received", {}),
            ("form.submitted", {"attributes": {"spend": 5}}),
        ]
    ):
        event = CustomerEvent(
            customer_id="c",
            type=kind,
            occurred_at=START + timedelta(minutes=index),
            data=data,
            idempotency_key=f"k{index}",
        )
        state = apply_event(state, event, catalog, START + timedelta(minutes=index)).state
        if index == 1:
            assert state.guard_failures == 2 and list(state.guard_errors) == [
                "customer.attributes.spend > 100"
            ]
    assert state.guard_failures == 2  # the third event's evaluation succeeded (false)
    assert state.guard_errors == {}
