"""A corpus of broken documents: each produces exactly the diagnostics in its .expected file.

To accept a deliberate change of wording, regenerate one with
`sopflow validate tests/broken/NAME.yaml > tests/broken/NAME.expected` and review the diff.
"""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import REPO

BROKEN = sorted((REPO / "tests" / "broken").glob("*.yaml"))


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_document_gets_exactly_its_diagnostics(path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    relative = path.relative_to(REPO)
    result = CliRunner().invoke(app, ["validate", str(relative)])
    expected = path.with_suffix(".expected").read_text(encoding="utf-8")
    assert result.output == expected
    has_error = ": error: " in expected
    assert result.exit_code == (1 if has_error else 0)


def test_the_corpus_covers_every_kind_of_diagnostic() -> None:
    everything = "".join(p.with_suffix(".expected").read_text() for p in BROKEN)
    for phrase in (
        "unknown stage",
        "unknown template",
        "unknown tag",
        "unknown tag group",
        "is not a valid channel",
        "unknown window",
        "unknown playbook",
        "zero-delay cycle",
        "does not type-check",
        "does not parse",
        "unknown field",
        "cannot exist",
        "larger than the time available",
        "is unreachable",
        "has no way out",
        "with no timeout",
        "invalid YAML",
        "unknown kind",
        "unknown key",
        "unknown time zone",
        "is not a cron expression",
        "is not a duration",
        "duplicate key",
        "nested deeper than",
        "repeated through aliases",
        "recursive structures are not allowed",
        "cannot read this value",
        "inside one another; at most",
        "lists and maps hold at most",
        "texts hold at most",
        "pattern written in the guard",
        "even on a customer with no data",
        "deeper than 16 levels",
        "characters long; a guard holds at most",
        "values built by a template hold at most",
        "numbers built by a template hold at most",
        "is not allowed: a template must render the same text every time",
        "unknown filter",
        "cannot include, import or extend",
        "loops inside one another",
        "loops cannot be recursive",
        "template nests deeper than 16 levels",
        "loops would take",
        "unknown test",
        "function 'lipsum' is not allowed",
        "tojson indents by at most",
        "never opens outside the quiet hours",
        "urgent send can be delivered at night",
        "urgent has no effect",
        "a send window is a range",
        "has no on_missing",
        "is never taken",
        "is not a deadline",
        "is read but nothing writes it",
        "does not validate: fix its errors first",
        "not a sopflow document",
    ):
        assert phrase in everything, phrase
