"""Language v1.1 (issue 13): send windows with several ranges, urgent sends, what counts as
interaction, playbook-wide triggers, countdowns that cannot hang; and plan versions that
stay put for playbooks that use none of it."""

import json
from datetime import timedelta
from pathlib import Path

from sopflow.language import compile_paths, compile_playbook
from tests.conftest import REPO
from tests.test_core_behaviour import START, playbook, run, what

# The versions of the shipped playbooks as compiled before language v1.1: a playbook that
# uses no new feature keeps its version, so an upgrade neither looks like a redeployment
# nor strands the journeys pinned to the old one. A plan field added later must be marked
# HASHED_WHEN_SET (sopflow/language/plan.py) or this test fails.
# (auto_high_ticket is left out: its countdowns now declare on_missing and on_past.)
# Shipped playbooks whose documents have not changed since before language v1.1 (and
# audiences): snacks and KOC nurturing gave their group sends to group playbooks, and the
# taxonomy gained a group, so their versions changed with their content.
VERSIONS_BEFORE_V11 = {
    "koc_campaign": "19b9aa3f0d8ba8af",
    "one_to_one_five_stage": "df662445b1a5ea6a",
    "welcome": "fa7ede4b57613d0d",
}


def test_playbooks_that_use_no_new_feature_keep_their_versions() -> None:
    bundle = compile_paths([REPO / "playbooks"])
    versions = {name: plan.version for name, plan in bundle.plans.items()}
    assert {name: versions[name] for name in VERSIONS_BEFORE_V11} == VERSIONS_BEFORE_V11
    assert versions["auto_high_ticket"] != "57f7f75ec1fd813e"  # it uses countdown branches
    assert bundle.profile is not None


def test_a_new_feature_in_use_changes_the_version() -> None:
    body = """\
  hello:
    on_enter: [{send: {channel: wecom.private, text: hi%s}}]
    end: true
"""
    plain = compile_playbook(playbook("p", body % ""))
    urgent = compile_playbook(playbook("p", body % ", urgent: true"))
    assert plain.version != urgent.version
    assert urgent.stages["hello"].on_enter[0].urgent is True  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- windows

WINDOWS = """\
contact_policy: {quiet_hours: "21:00-09:00"}
windows:
  meal_times: ["weekdays 11:30-13:00", "weekdays 19:00-21:00", "weekends 10:00-21:00"]
"""


def test_the_next_range_of_a_window_list_to_open_wins() -> None:
    body = """\
  offers:
    on_enter: [{send: {channel: wecom.private, text: a, window: meal_times}}]
    triggers:
      - after: 4h      # Monday 13:00: lunch has closed, dinner opens at 19:00
        actions: [{send: {channel: wecom.private, text: b, window: meal_times}}]
      - after: 4d12h   # Friday 21:30: the weekend range opens first, Saturday 10:00
        actions:
          - send: {channel: wecom.private, text: c, window: [meal_times, "sun 09:00-10:00"]}
      - after: 6d
        goto: done
  done: {end: true}
"""
    timeline = run(playbook("meals", body, extra=WINDOWS), [{"type": "contact.added"}], days=7)
    sent = [(e.text, e.at - START) for e in timeline if e.kind == "message"]
    assert sent == [
        ("a", timedelta(hours=2, minutes=30)),  # Monday 11:30
        ("b", timedelta(hours=10)),  # Monday 19:00
        ("c", timedelta(days=5, hours=1)),  # Saturday 10:00
    ]


def test_an_urgent_send_ignores_quiet_hours_but_not_the_caps() -> None:
    body = """\
  last_call:
    triggers:
      - after: 13h   # 22:00, inside the quiet hours
        actions:
          - send: {channel: wecom.private, text: urgent, urgent: true}
          - send: {channel: wecom.private, text: also urgent, urgent: true}
          - send: {channel: wecom.private, text: ordinary}
      - after: 2d
        goto: done
  done: {end: true}
"""
    policy = 'contact_policy: {quiet_hours: "21:00-09:00", max_per_day: 1}\n'
    timeline = run(playbook("sale", body, extra=policy), [{"type": "contact.added"}], days=3)
    assert what(timeline, "message", "suppressed", "deferred") == [
        ("message", "sale", "last_call", "urgent", timedelta(hours=13)),
        ("suppressed", "sale", "last_call", "also urgent", timedelta(hours=13)),
        ("deferred", "sale", "last_call", "ordinary", timedelta(hours=13)),
        ("message", "sale", "last_call", "ordinary", timedelta(days=1)),
    ]


def test_validate_warns_when_an_urgent_send_can_land_at_night(tmp_path: Path) -> None:
    body = """\
  s:
    on_enter:
      - send: {channel: wecom.private, text: a, urgent: true}
      - send: {channel: wecom.private, text: b, urgent: true, window: "daily 10:00-20:00"}
    end: true
"""
    (tmp_path / "p.yaml").write_text(playbook("p", body, extra=WINDOWS))
    found = [(d.severity, d.line, d.message) for d in compile_paths([tmp_path]).diagnostics]
    assert found == [
        (
            "warning",
            11,
            "urgent send can be delivered at night, inside the quiet hours 21:00-09:00: "
            "give it a window outside them if that is not meant",
        )
    ]


# ----------------------------------------------------------------------------- interaction

SILENCE = """\
  watching:
    triggers:
      - inactive_for: 7d
        actions: [{send: {channel: wecom.private, text: "silent {{ journey.days_inactive }}d"}}]
      - condition: "journey.days_inactive >= 3 && customer.days_inactive < 3"
        actions: [{send: {channel: log, text: "silent for this playbook only"}}]
      - after: 20d
        goto: done
  done: {end: true}
"""
CLICKS = [
    {"after": "0s", "type": "contact.added"},
    {"after": "5d", "type": "message.received"},
    {"after": "9d", "type": "link.clicked"},
]


def test_a_playbooks_interaction_events_alone_reset_its_inactivity() -> None:
    own = "interaction_events: [message.received, order.paid]\n"
    timeline = run(playbook("winback", SILENCE, extra=own), CLICKS, days=21)
    assert [(e.text, e.at - START) for e in timeline if e.kind == "message"] == [
        ("silent for this playbook only", timedelta(days=9)),  # the click: silent here only
        ("silent 7d", timedelta(days=12)),  # the click on day 9 did not count
    ]


def test_by_default_every_catalogue_interaction_resets_inactivity() -> None:
    timeline = run(playbook("winback", SILENCE), CLICKS, days=21)
    assert [(e.text, e.at - START) for e in timeline if e.kind == "message"] == [
        ("silent 7d", timedelta(days=16)),  # seven days after the click
    ]


def test_the_customer_remembers_a_bounded_number_of_event_types() -> None:
    from sopflow.core.state import EVENT_TYPES_LIMIT, Profile

    profile = Profile()
    for index in range(EVENT_TYPES_LIMIT + 5):
        profile.remember_event(f"custom.e{index}", START + timedelta(minutes=index))
    profile.remember_event("custom.e0", START + timedelta(days=1))  # seen again: kept, newest
    assert len(profile.last_event_at) == EVENT_TYPES_LIMIT
    assert "custom.e1" not in profile.last_event_at
    assert profile.last_interaction(("custom.e0", "custom.e104")) == START + timedelta(days=1)
    assert profile.last_interaction(("custom.e1",)) is None


# ----------------------------------------------------------------------------- everywhere

EVERYWHERE = """\
triggers:
  - event: quiz.completed
    actions: [{tag: {add: ["skin:{{ event.data.skin }}"]}}]
  - every: 3d
    actions: [{send: {channel: log, text: "every 3 days of the journey"}}]
  - condition: "'vip:yes' in customer.tags"
    actions: [{send: {channel: log, text: "vip"}}]
"""
STAGES = """\
  first:
    triggers: [{after: 2d, goto: second}]
  second:
    triggers:
      - event: quiz.completed
        actions: [{send: {channel: log, text: "the stage's own"}}]
      - after: 1d
        goto: third
  third:
    triggers: [{after: 5d, goto: done}]
  done: {end: true}
"""


def test_playbook_wide_triggers_run_in_every_stage_after_the_stages_own() -> None:
    events = [
        {"after": "0s", "type": "contact.added"},
        {"after": "1d", "type": "quiz.completed", "data": {"skin": "oily"}},
        {"after": "2d1h", "type": "quiz.completed", "data": {"skin": "dry"}},
        {"after": "3d1h", "type": "tag.added", "data": {"tag": "vip:yes"}},
    ]
    timeline = run(playbook("p", STAGES, extra=EVERYWHERE), events, days=10)
    assert [
        (e.kind, e.stage, e.text or e.detail.get("tag"), e.at - START)
        for e in timeline
        if e.kind in ("message", "tag_added") and e.playbook
    ] == [
        ("tag_added", "first", "skin:oily", timedelta(days=1)),
        # Both lists run for one event: the stage's own first, then the playbook's.
        ("message", "second", "the stage's own", timedelta(days=2, hours=1)),
        ("tag_added", "second", "skin:dry", timedelta(days=2, hours=1)),
        # Timed from the journey's start: stage changes on days 2 and 3 restart nothing.
        ("message", "third", "every 3 days of the journey", timedelta(days=3)),
        ("message", "third", "vip", timedelta(days=3, hours=1)),
        ("message", "third", "every 3 days of the journey", timedelta(days=6)),
        # The condition stays true: entering `done` would not fire it again (and `done`
        # is an end).
    ]


def test_a_playbook_wide_goto_is_checked_once_and_counts_as_a_way_out(tmp_path: Path) -> None:
    body = """\
  waiting: {}
  other: {}
"""
    extra = "triggers: [{event: contact.removed, goto: gone}]\n"
    (tmp_path / "p.yaml").write_text(playbook("p", body, extra=extra))
    found = [str(d) for d in compile_paths([tmp_path]).diagnostics]
    assert found == [
        f"{tmp_path / 'p.yaml'}:5:43: error: unknown stage 'gone' (at triggers[0].goto)",
        f"{tmp_path / 'p.yaml'}:8:3: warning: stage 'other' is unreachable: "
        "no transition leads to it (at stages.other)",
    ]


# ----------------------------------------------------------------------------- countdowns

COUNTDOWN = """\
  counting:
    triggers:
      - countdown:
          deadline: %s
          offsets: [1d]
          on_missing: {actions: [{send: {channel: log, text: missing}}], goto: closed}
          on_past: {actions: [{send: {channel: log, text: "past {{ countdown.deadline }}"}}]}
        actions: [{send: {channel: log, text: "left {{ countdown.remaining }}"}}]
        goto: closed
      - after: 10d
        goto: closed
  closed: {end: true}
"""


def messages(timeline: list) -> list[tuple[str, timedelta]]:
    return [(e.text, e.at - START) for e in timeline if e.kind == "message"]


def test_a_countdown_reads_its_deadline_from_the_enrolling_events_data() -> None:
    enrol = [
        {"after": "0s", "type": "sale.joined", "data": {"ends_at": "2026-11-26T09:00:00+08:00"}}
    ]
    timeline = run(playbook("sale", COUNTDOWN % "event.data.ends_at", "sale.joined"), enrol)
    assert messages(timeline) == [("left 1d", timedelta(days=2))]
    assert [e.stage for e in timeline if e.kind == "stage_entered"] == ["counting", "closed"]


def test_a_missing_or_unreadable_deadline_takes_on_missing_at_once() -> None:
    for data in ({}, {"ends_at": "next friday"}):
        enrol = [{"after": "0s", "type": "sale.joined", "data": data}]
        timeline = run(playbook("sale", COUNTDOWN % "event.data.ends_at", "sale.joined"), enrol)
        branch = next(e for e in timeline if e.kind == "countdown_branch")
        assert branch.detail == {
            "branch": "on_missing",
            "deadline": "event.data.ends_at: missing or not a time",
        }
        assert messages(timeline) == [("missing", timedelta(0))]


def test_a_past_deadline_takes_on_past_and_the_stage_goes_on() -> None:
    events = [
        {"after": "0s", "type": "contact.added", "data": {"attributes": {"ends": "2026-11-01"}}}
    ]
    timeline = run(playbook("sale", COUNTDOWN % "ends"), events)
    assert messages(timeline) == [("past 2026-11-01 00:00:00+08:00", timedelta(0))]
    # No goto in on_past: the customer stays until the stage's other trigger.
    assert [(e.stage, e.at - START) for e in timeline if e.kind == "stage_entered"] == [
        ("counting", timedelta(0)),
        ("closed", timedelta(days=10)),
    ]


def test_a_countdown_without_branches_still_waits_as_before() -> None:
    body = (COUNTDOWN % "ends").replace(
        "          on_missing: {actions: [{send: {channel: log, text: missing}}], goto: closed}\n",
        "",
    )
    timeline = run(playbook("sale", body), [{"type": "contact.added"}])
    assert messages(timeline) == []
    assert [e.kind for e in timeline if e.kind == "countdown_branch"] == []


# ----------------------------------------------------------------------------- folders


def test_validate_and_deploy_skip_simulate_files_anywhere_with_a_note(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    folder = tmp_path / "brand"
    (folder / "campaign" / "runs").mkdir(parents=True)
    (folder / "welcome.yaml").write_text((REPO / "playbooks" / "welcome.yaml").read_text())
    (folder / "campaign" / "runs" / "events.yaml").write_text("- {after: 0s, type: x.y}\n")
    (folder / "customer.yaml").write_text("id: wx_1\nattributes: {nickname: Wang}\n")
    notes = [
        f"{folder / 'campaign/runs/events.yaml'}:1:1: note: not a sopflow document (a list: "
        "events for `sopflow simulate --events`?), skipped",
        f"{folder / 'customer.yaml'}:1:1: note: not a sopflow document (a mapping with no "
        "apiVersion or kind: a customer for `sopflow simulate --customer`?), skipped",
    ]
    runner = CliRunner()
    validated = runner.invoke(app, ["validate", str(folder)])
    assert (validated.exit_code, validated.output.splitlines()) == (0, notes)
    deployed = runner.invoke(app, ["deploy", str(folder), "--home", str(tmp_path / "home")])
    assert deployed.exit_code == 0, deployed.output
    assert deployed.output.splitlines() == [
        *notes,
        f"deployed welcome {VERSIONS_BEFORE_V11['welcome']}",
        "deployment 1",
    ]


def test_a_refused_taxonomy_still_checks_the_tags_and_builds_no_profile(tmp_path: Path) -> None:
    body = """\
  s:
    on_enter: [{tag: {add: ["skin:wet"]}}]
    end: true
"""
    taxonomy = """\
apiVersion: sopflow/v1
kind: TagTaxonomy
metadata: {name: t}
categories:
  c:
    skin: {tags: [dry, oily], multi: maybe}
"""
    (tmp_path / "p.yaml").write_text(playbook("p", body) + "---\n" + taxonomy)
    bundle = compile_paths([tmp_path])
    assert [d.message for d in bundle.errors] == [
        "unknown tag 'skin:wet', did you mean 'skin:dry'?",
        "Input should be a valid boolean, unable to interpret input",
    ]
    assert bundle.profile is None and bundle.plans == {}


# ----------------------------------------------------------------------------- simulate


def test_simulate_runs_the_files_playbooks_and_those_named_with(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    capped = "contact_policy: {max_per_day: 1}\n"
    hello = "  hello:\n    on_enter: [{send: {channel: wecom.private, text: %s}}]\n    end: true\n"
    (tmp_path / "nurture.yaml").write_text(playbook("nurture", hello % "welcome", extra=capped))
    (tmp_path / "campaign.yaml").write_text(playbook("campaign", hello % "sale", extra=capped))
    runner = CliRunner()
    base = ["simulate", str(tmp_path / "nurture.yaml"), "--days", "1", "--format", "json"]
    alone = runner.invoke(app, base)
    assert {e["playbook"] for e in json.loads(alone.output)} == {"nurture"}
    together = runner.invoke(app, [*base, "--with", "campaign"])
    sends = [(e["playbook"], e["kind"]) for e in json.loads(together.output) if e.get("text")]
    # One customer: the caps count both playbooks' messages.
    assert sends == [("campaign", "message"), ("nurture", "suppressed")]
    typo = runner.invoke(app, [*base, "--with", "campain"])
    assert typo.exit_code == 1
    assert f"--with: no playbook 'campain' in {tmp_path}, did you mean 'campaign'?" in typo.output
