"""compile_playbook: plans from valid YAML, actionable diagnostics from broken YAML."""

from pathlib import Path

import pytest

from sopflow.language import PlaybookError, compile_playbook, compile_playbook_file
from tests.conftest import WELCOME

MINIMAL = """\
apiVersion: sopflow/v1
kind: Playbook
metadata:
  name: minimal
enrol:
  event: contact.added
stages:
  greet:
    on_enter:
      - send: {channel: log, text: hello}
    triggers:
      - event: message.received
        goto: done
      - after: 3d
        goto: done
  done:
    end: true
"""


def diagnostics_of(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        compile_playbook(text, filename="pb.yaml")
    return [str(d) for d in caught.value.diagnostics]


def test_compiles_stages_triggers_and_actions_into_a_plan() -> None:
    plan = compile_playbook(MINIMAL)
    assert plan.name == "minimal"
    assert plan.entry_stage == "greet"
    assert plan.enrol_event == "contact.added"
    greet = plan.stages["greet"]
    assert [(a.kind, getattr(a, "text", None)) for a in greet.on_enter] == [("send", "hello")]
    assert [(t.kind, t.event, t.after_seconds, t.goto) for t in greet.triggers] == [
        ("event", "message.received", None, "done"),
        ("after", None, 3 * 86400, "done"),
    ]
    assert plan.stages["done"].end is True


def test_version_is_a_content_hash() -> None:
    same = compile_playbook(MINIMAL)
    assert compile_playbook(MINIMAL).version == same.version
    # Comments and formatting do not change behaviour, so they do not change the version.
    reformatted = "# a comment\n" + MINIMAL.replace(
        "{channel: log, text: hello}", "{text: hello, channel: log}"
    )
    assert compile_playbook(reformatted).version == same.version
    changed = compile_playbook(MINIMAL.replace("after: 3d", "after: 4d"))
    assert changed.version != same.version


def test_plan_is_immutable() -> None:
    plan = compile_playbook(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        plan.entry_stage = "done"  # type: ignore[misc]


def test_plans_of_one_version_are_shared_within_a_process() -> None:
    from sopflow.language.plan import Plan, shared_plan

    text = WELCOME.read_text(encoding="utf-8")
    plan = compile_playbook(text)
    copy = Plan.model_validate_json(plan.model_dump_json())  # as a workflow receives it
    # The shared object is the first of this version still alive in the process: this one,
    # or one an earlier test (or a cache of the core) still holds.
    shared = shared_plan(plan)
    assert copy is not plan and shared == plan
    assert shared_plan(copy) is shared  # every customer holds the one object of the version
    other = compile_playbook(text.replace("icebreak", "hello"))
    assert shared_plan(other) is not shared and shared_plan(other).version == other.version


def test_shipped_example_compiles() -> None:
    plan = compile_playbook_file(WELCOME)
    assert plan.name == "welcome" and plan.entry_stage == "icebreak"


def test_unknown_stage_names_line_column_and_nearest_stage() -> None:
    assert diagnostics_of(
        MINIMAL.replace("goto: done\n      - after", "goto: dnoe\n      - after")
    ) == [
        "pb.yaml:13:15: error: unknown stage 'dnoe', did you mean 'done'? "
        "(at stages.greet.triggers[0].goto)"
    ]


def test_unknown_key_suggests_the_known_one() -> None:
    assert diagnostics_of(MINIMAL.replace("    triggers:", "    trigers:")) == [
        "pb.yaml:11:5: error: unknown key 'trigers', did you mean 'triggers'? "
        "(at stages.greet.trigers)"
    ]


def test_unknown_action_kind_suggests_the_known_one() -> None:
    assert diagnostics_of(MINIMAL.replace("- send:", "- sned:")) == [
        "pb.yaml:10:9: error: unknown kind 'sned', expected one of 'send', 'task', 'tag', "
        "'set', 'set_journey', 'score', 'goto', 'enrol', 'end', 'enrol_member', did you mean "
        "'send'? "
        "(at stages.greet.on_enter[0])"
    ]


def test_bad_duration_says_which_forms_are_accepted() -> None:
    assert diagnostics_of(MINIMAL.replace("after: 3d", "after: 3 days")) == [
        "pb.yaml:14:16: error: '3 days' is not a duration: write 15m, 3h, 3d, 2w "
        "(units s m h d w, combinable as 1d12h) or ISO 8601 such as P3D or PT15M "
        "(at stages.greet.triggers[1].after)"
    ]


def test_unknown_channel_lists_the_channels() -> None:
    assert diagnostics_of(MINIMAL.replace("channel: log", "channel: sms")) == [
        "pb.yaml:10:25: error: 'sms' is not a valid channel: expected 'log', 'webhook', "
        "'wecom.private', 'wecom.group' or 'wecom.moments' "
        "(at stages.greet.on_enter[0].send.channel)"
    ]


def test_every_error_is_reported_at_once() -> None:
    broken = MINIMAL.replace("name: minimal", "name: Minimal Playbook").replace(
        "after: 3d", "after: x"
    )
    found = diagnostics_of(broken)
    assert len(found) == 2
    assert found[0].startswith("pb.yaml:4:9: error: 'Minimal Playbook' is not a valid name")


def test_missing_key_is_named() -> None:
    assert diagnostics_of(MINIMAL.replace("enrol:\n  event: contact.added\n", "")) == [
        "pb.yaml:1:1: error: missing required key 'enrol'"
    ]


def test_invalid_yaml_points_at_the_problem() -> None:
    assert diagnostics_of("stages:\n  a: [unclosed\n") == [
        "pb.yaml:3:1: error: invalid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    [message] = diagnostics_of("just a sentence\n")
    assert message.startswith("pb.yaml:1:1: error: expected a mapping with apiVersion")


def test_a_list_is_not_a_playbook_but_simulates_events() -> None:
    # A list is what `sopflow simulate --events` reads: noted and skipped, never compiled.
    assert diagnostics_of("- just\n- a list\n") == [
        "pb.yaml:1:1: error: no Playbook document found"
    ]


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match=r"missing\.yaml:1:1: error: cannot read"):
        compile_playbook_file(tmp_path / "missing.yaml")
