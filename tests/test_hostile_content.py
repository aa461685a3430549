"""Issue 11, findings 3, 4, 5 and `|random`: operator content that wedged, froze or killed.

Each probe is the one the hostile-input review reproduced against `sopflow dev`; each
failed (an exception, a hang, a process killed for memory) before the limits existed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sopflow.language.loader import load_text
from sopflow.language.yaml_positions import MAX_ALIAS_NODES, MAX_YAML_CHARS, MAX_YAML_DEPTH

BROKEN = Path(__file__).resolve().parent / "broken"
HEADER = """apiVersion: sopflow/v1
kind: Playbook
metadata: {name: hostile}
enrol: {event: contact.added}
"""


def _errors(text: str) -> list[str]:
    _, problems = load_text(text, "hostile.yaml")
    assert all(p.severity == "error" for p in problems)
    return [f"{p.line}:{p.column} {p.message}" for p in problems]


# --------------------------------------------------------------------------- finding 5: YAML


def test_a_seven_level_alias_bomb_is_refused_at_the_alias_that_crosses_the_budget() -> None:
    text = (BROKEN / "yaml_alias_bomb.yaml").read_text(encoding="utf-8")
    assert len(text.encode()) <= 436  # the size of the probe that grew `sopflow dev` to 18 GB
    documents, problems = load_text(text, "bomb.yaml")
    assert documents == []
    [problem] = problems
    assert (problem.line, problem.column) == (10, 10)  # `d: &d [*c, ...`: the fifth level
    assert problem.message.startswith("alias '*d' takes the nodes repeated through aliases")
    assert f"past {MAX_ALIAS_NODES} (the limit)" in problem.message


def test_aliases_within_the_budget_still_work() -> None:
    text = HEADER + (
        "content:\n  hello: &hello 你好\nstages:\n  start:\n"
        "    on_enter:\n      - &greet {send: {channel: log, content: hello}}\n"
        "      - *greet\n    end: true\n"
    )
    documents, problems = load_text(text, "aliases.yaml")
    assert problems == []
    [document] = documents
    assert len(document.model.stages["start"].on_enter) == 2


def test_a_recursive_alias_is_refused_instead_of_recursing_forever() -> None:
    assert _errors("a: &a [1, *a]\n") == [
        "1:11 alias '*a' refers to a node that contains it: recursive structures are not allowed"
    ]


def test_deep_nesting_is_a_diagnostic_not_a_recursion_error() -> None:
    for text in ("a: " + "[" * 100_000 + "]" * 100_000, "- " * 5_000 + "x"):
        [error] = _errors(text)
        assert error.endswith(f"nested deeper than {MAX_YAML_DEPTH} levels (the limit)")


def test_aliases_cannot_stack_nesting_past_the_depth_limit() -> None:
    lines = ["a0: &a0 " + "[" * 40 + "1" + "]" * 40]
    lines += [f"a{i}: &a{i} " + "[" * 40 + f"*a{i - 1}" + "]" * 40 for i in range(1, 5)]
    [error] = _errors("\n".join(lines))
    assert (
        error
        == f"2:49 alias '*a0' nests the document deeper than {MAX_YAML_DEPTH} levels (the limit)"
    )


def test_a_key_written_twice_is_an_error_at_the_second_one() -> None:
    text = HEADER + "stages:\n  start: {end: true}\n  start:\n    end: false\n"
    errors = _errors(text)
    assert (
        "7:3 duplicate key 'start' (first written at line 6): a key may appear once in a mapping"
        in errors
    )


def test_a_text_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    text = HEADER + "# " + "x" * MAX_YAML_CHARS + "\n"
    [error] = _errors(text)
    assert error == (
        f"5:1 the text is {len(text)} characters long, over the limit of {MAX_YAML_CHARS}: "
        "split it into several files"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-13-45", "month must be in 1..12"),
        ("1" * 5_000, "Exceeds the limit (4300 digits) for integer string conversion"),
    ],
)
def test_a_value_python_cannot_build_is_a_diagnostic_at_that_value(value: str, reason: str) -> None:
    [error] = _errors(f"a: {value}\n")
    assert error.startswith(f"1:4 invalid YAML: cannot read this value: {reason}")
