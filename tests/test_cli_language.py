"""`sopflow graph`, `simulate` and `validate` as an operator runs them."""

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import REPO, WELCOME

runner = CliRunner()


def test_graph_prints_a_mermaid_state_diagram_with_trigger_labels() -> None:
    result = runner.invoke(app, ["graph", str(WELCOME)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "stateDiagram-v2"
    for edge in (
        "    [*] --> icebreak",
        "    icebreak --> engaged : message.received",
        "    icebreak --> reactivate : after 3d",
        "    reactivate --> dormant : after 2w",
        "    engaged --> [*]",
        "    dormant --> [*]",
    ):
        assert edge in lines


def test_simulate_json_has_the_documented_fields(tmp_path: Path) -> None:
    events = tmp_path / "events.json"
    events.write_text(
        json.dumps(
            [
                {"at": "2026-11-23T09:00:00+08:00", "type": "contact.added"},
                {"after": "1d", "type": "message.received"},
            ]
        )
    )
    result = runner.invoke(
        app,
        [
            "simulate",
            str(WELCOME),
            "--events",
            str(events),
            "--start",
            "2026-11-23T09:00:00+08:00",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    for entry in entries:
        assert {"at", "playbook", "stage", "kind"} <= entry.keys()
    messages = [e for e in entries if e["kind"] == "message"]
    assert [(m["at"], m["channel"], m["stage"]) for m in messages] == [
        ("2026-11-23T01:00:00Z", "log", "icebreak"),
        ("2026-11-24T01:00:00Z", "webhook", "engaged"),
    ]
    assert messages[0]["text"].startswith("你好")


def test_simulate_uses_the_customer_file(tmp_path: Path) -> None:
    playbook = tmp_path / "pb.yaml"
    playbook.write_text("""\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: greet}
enrol: {event: contact.added}
stages:
  hello:
    on_enter: [{send: {channel: log, text: "你好 {{ customer.attributes.nickname }}"}}]
    triggers: [{day: 1, time: "10:00", goto: done}]
  done: {end: true}
""")
    customer = tmp_path / "customer.yaml"
    customer.write_text("id: wx_1\ntimezone: Europe/Paris\nattributes: {nickname: 小美}\n")
    result = runner.invoke(
        app,
        [
            "simulate",
            str(playbook),
            "--customer",
            str(customer),
            "--start",
            "2026-11-23T09:00:00+01:00",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert [e["text"] for e in entries if e["kind"] == "message"] == ["你好 小美"]
    assert entries[-1]["at"] == "2026-11-24T09:00:00Z"  # day 1 at 10:00 in Paris


def test_simulate_reports_a_broken_playbook_and_a_bad_events_file(tmp_path: Path) -> None:
    broken = REPO / "tests/broken/unknown_stage.yaml"
    result = runner.invoke(app, ["simulate", str(broken)])
    assert result.exit_code == 1
    assert "unknown stage 'discovr', did you mean 'discover'?" in result.output
    events = tmp_path / "events.yaml"
    events.write_text("- {after: soon, type: contact.added}\n")
    result = runner.invoke(app, ["simulate", str(WELCOME), "--events", str(events)])
    assert result.exit_code == 1
    assert "events.yaml[0]: 'soon' is not a duration" in result.output


def test_validate_prints_warnings_and_exits_0_without_errors() -> None:
    result = runner.invoke(app, ["validate", str(REPO / "tests/broken/warnings.yaml")])
    assert result.exit_code == 0
    assert result.output.count(": warning: ") == 3


def test_keys_create_list_and_revoke(tmp_path: Path) -> None:
    from sopflow.settings import Settings
    from sopflow.store.database import Database
    from sopflow.store.keys import Role, authenticate

    home = str(tmp_path / "home")
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--role",
            "staff",
            "--name",
            "李雷",
            "--staff",
            "li_lei",
            "--home",
            home,
        ],
    )
    assert created.exit_code == 0, created.output
    token = created.output.splitlines()[0]
    database = Database.from_settings(Settings(home=tmp_path / "home"))
    principal = authenticate(database, token)
    assert principal is not None
    assert (principal.role, principal.staff_id) == (Role.STAFF, "li_lei")
    listed = runner.invoke(app, ["keys", "list", "--home", home])
    assert f"{principal.key_id}  staff    李雷  li_lei" in listed.output
    # the secret is never shown again (it is everything after the key id: it may hold '_')
    secret = token.split("_", 2)[2]
    assert len(secret) >= 32 and secret not in listed.output
    revoked = runner.invoke(app, ["keys", "revoke", principal.key_id, "--home", home])
    assert revoked.exit_code == 0 and authenticate(database, token) is None
    again = runner.invoke(app, ["keys", "revoke", principal.key_id, "--home", home])
    assert again.exit_code == 1 and "no active key" in again.output
    no_staff = runner.invoke(app, ["keys", "create", "--role", "staff", "--home", home])
    assert no_staff.exit_code == 1 and "needs --staff" in no_staff.output
