"""Every trigger and action example in the docs (docs/language.md) runs through
`sopflow simulate` and prints exactly the timeline the docs show."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.docs import documentation

EXAMPLE = re.compile(
    r"```yaml\n# example: (?P<name>\w+)\n(?P<playbook>.*?)```\n\n"
    r"```yaml\n# events\n(?P<events>.*?)```\n\n"
    r"`sopflow simulate example\.yaml --events events\.yaml (?P<args>[^`]*)`\n\n"
    r"```text\n(?P<timeline>.*?)```",
    flags=re.S,
)
EXAMPLES = list(EXAMPLE.finditer(documentation()))
TRIGGERS = {
    "event",
    "after",
    "at",
    "day",
    "every",
    "cron",
    "inactive_for",
    "condition",
    "countdown",
    "wait_for",
}
ACTIONS = {
    "send",
    "task",
    "tag",
    "set",
    "set_journey",
    "score",
    "goto",
    "enrol",
    "end",
    "enrol_member",
}


def test_every_trigger_and_action_has_an_example() -> None:
    playbooks = "".join(m["playbook"] for m in EXAMPLES)
    used = set(re.findall(r"[{\s-]\s?(\w+):", playbooks))
    assert used >= TRIGGERS, TRIGGERS - used
    assert used >= ACTIONS, ACTIONS - used
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda m: m["name"])
def test_readme_example_simulates_as_printed(example: re.Match[str], tmp_path: Path) -> None:
    folder = tmp_path / example["name"]
    folder.mkdir()
    (folder / "example.yaml").write_text(example["playbook"], encoding="utf-8")
    (tmp_path / "events.yaml").write_text(example["events"], encoding="utf-8")
    args = example["args"].split()
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            str(folder / "example.yaml"),
            "--events",
            str(tmp_path / "events.yaml"),
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output == example["timeline"]
