"""Issue 11, findings 3, 4, 5 and `|random`: operator content that wedged, froze or killed.

Each probe is the one the hostile-input review reproduced against `sopflow dev`; each
failed (an exception, a hang, a process killed for memory) before the limits existed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sopflow.core import simulator
from sopflow.language import PlaybookError, compile_playbook, guards, templates
from sopflow.language.compiler import compile_bundle
from sopflow.language.guard_cost import MAX_GUARD_COST
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


# ------------------------------------------------------------------ finding 5: YAML


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


def test_deep_yaml_nesting_is_a_diagnostic_not_a_recursion_error() -> None:
    for text in ("a: " + "[" * 50_000 + "]" * 50_000, "- " * 5_000 + "x"):
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


# ------------------------------------------------------------------ finding 4: guards

DIGITS = "[0,1,2,3,4,5,6,7,8,9]"


def _nested_all(levels: int, index: int = 0) -> str:
    if levels == 0:
        return "true"
    return f"{DIGITS}.all(x{index}, {_nested_all(levels - 1, index + 1)})"


def _playbook_with_guard(guard: str) -> str:
    return HEADER.replace(
        "enrol: {event: contact.added}", f'enrol:\n  event: contact.added\n  when: "{guard}"'
    ) + ("stages:\n  start: {end: true}\n")


def test_eight_nested_comprehensions_are_refused_when_the_playbook_is_compiled() -> None:
    # The probe: 19 seconds of one core, the API's event loop and every worker frozen.
    with pytest.raises(PlaybookError) as refused:
        compile_playbook(_playbook_with_guard(_nested_all(8)), filename="probe.yaml")
    [diagnostic] = refused.value.diagnostics
    assert (diagnostic.line, diagnostic.path) == (6, ("enrol", "when"))
    assert diagnostic.message == (
        "guard nests 8 of all/exists/exists_one/map/filter inside one another; at most 2 "
        "(the limit): each level multiplies the work"
    )


def test_a_hostile_guard_already_deployed_is_not_evaluated() -> None:
    # Plans compiled before the limits existed still hold the probe: the runtime refuses
    # it from its text alone, without running it.
    outcome = guards.evaluate_guard_outcome(_nested_all(9), {})
    assert outcome.value is False
    assert outcome.error is not None
    assert outcome.error.startswith("guard not evaluated: guard nests 9 of all/exists")


def test_a_guard_that_doubles_a_list_thirty_times_is_refused_for_its_cost() -> None:
    guard = "[[0,1,2,3,4,5,6,7,8,9]]" + ".map(a, a + a)" * 30 + ".size() > 0"
    problem = guards.check_guard(guard, with_event=False)
    assert problem is not None
    assert problem.startswith("guard may take ")
    assert problem.endswith(
        f"steps even on a customer with no data; the limit is {MAX_GUARD_COST:,}: use fewer "
        "or shorter lists, comprehensions or patterns"
    )


def test_a_guard_quadratic_in_the_data_runs_on_small_customers_only() -> None:
    guard = "customer.tags.all(a, customer.tags.exists(b, a == b))"
    assert guards.check_guard(guard, with_event=False) is None
    small = {"customer": {"tags": [f"g:{i}" for i in range(5)]}}
    assert guards.evaluate_guard_outcome(guard, small) == guards.GuardOutcome(True)
    large = {"customer": {"tags": [f"g:{i}" for i in range(2_000)]}}
    outcome = guards.evaluate_guard_outcome(guard, large)
    assert outcome.value is False
    assert outcome.error is not None
    assert outcome.error.startswith("guard not evaluated: on this customer's data it may take")
    assert outcome.error.endswith("(customer.tags holds 2,000 items or units of 16 characters)")


@pytest.mark.parametrize(
    ("guard", "error"),
    [
        (
            "customer.orders.total_spent / customer.orders.count > 10",
            "guard failed: division by zero",
        ),
        ("customer.attributes.birthday == 'x'", "guard failed: no value for 'birthday'"),
        ("customer.orders.count", "guard gives int, not true or false"),
        (
            "9223372036854775807 + customer.orders.count > 0",
            "guard failed: Arithmetic overflow in 'add'",
        ),
    ],
)
def test_a_guard_that_fails_is_false_with_its_reason(guard: str, error: str) -> None:
    context = {"customer": {"orders": {"count": 1, "total_spent": 0}, "attributes": {}}}
    if "/" in guard:
        context["customer"]["orders"]["count"] = 0
    outcome = guards.evaluate_guard_outcome(guard, context)
    assert outcome.value is False
    assert outcome.error is not None
    assert outcome.error.startswith(error)
    assert guards.evaluate_guard(guard, context) is False


def test_patterns_must_be_written_in_the_guard_and_cheap() -> None:
    # (a{100}){100}: 13 characters that took 1.1 s against a 10,000-character text.
    heavy = guards.check_guard("event.data.text.matches('(a{100}){100}')", with_event=True)
    assert heavy is not None and heavy.startswith("guard may take ")
    from_data = guards.check_guard("event.data.text.matches(event.data.pattern)", with_event=True)
    assert from_data == (
        "matches() takes a pattern written in the guard (a text in quotes), so that its cost "
        "is known before it runs"
    )
    phone = "customer.attributes.phone.matches('^1[3-9]\\\\d{9}$')"
    assert guards.check_guard(phone, with_event=False) is None
    outcome = guards.evaluate_guard_outcome(
        phone, {"customer": {"attributes": {"phone": "13912345678"}}}
    )
    assert outcome == guards.GuardOutcome(True)


# ------------------------------------------------------------------ findings 3 and 4: templates

NO_ORDERS = {
    "customer": {"id": "wx_1", "orders": {"count": 0, "total_spent": 0.0}, "attributes": {}},
    "now": datetime(2026, 11, 23, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ customer.orders.total_spent / customer.orders.count }}",
            "division by zero: float division by zero (line 1)",
        ),
        (
            "{{ customer.id + 1 }}",
            'a value of the wrong type: can only concatenate str (not "int") to str (line 1)',
        ),
        (
            "{{ '%d'|format(customer.id) }}",
            "a value of the wrong type: %d format: a real number is required, not str (line 1)",
        ),
        (
            "{{ (customer.orders.total_spent + 1e308 * 10)|int }}",
            "a number too large: cannot convert float infinity to integer (line 1)",
        ),
        ("你好\n{{ customer.nickname }}", "'dict object' has no attribute 'nickname' (line 2)"),
    ],
)
def test_an_operator_typo_is_a_template_error_with_a_readable_message(
    template: str, message: str
) -> None:
    with pytest.raises(templates.TemplateError) as failed:
        templates.render_template(template, NO_ORDERS)
    assert type(failed.value) is templates.TemplateError
    assert str(failed.value).startswith(message)


def _run_welcome(text: str) -> list:
    playbook = HEADER + (
        "stages:\n  hello:\n"
        f'    on_enter: [{{send: {{channel: wecom.private, text: "{text}"}}}}]\n'
        "    triggers: [{after: 1d, goto: done}]\n  done: {end: true}\n"
    )
    documents, problems = load_text(playbook, "typo.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    start = datetime(2026, 11, 23, 1, tzinfo=UTC)
    events = simulator.parse_events([{"at": start.isoformat(), "type": "contact.added"}], start)
    return simulator.simulate(bundle.plans, bundle.profile, events, start, 3)


def test_a_template_typo_is_a_recorded_failure_and_the_journey_goes_on() -> None:
    # Before: ZeroDivisionError out of the journey core, a workflow task failing forever.
    timeline = _run_welcome("{{ customer.orders.total_spent / customer.orders.count }}")
    [failed] = [e for e in timeline if e.kind == "send_failed"]
    assert failed.error == "template: division by zero: float division by zero (line 1)"
    assert [e.stage for e in timeline if e.kind == "stage_entered"] == ["hello", "done"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ 'x' * 100000000 }}",
            "repeating with * would build a value of 100,000,000 characters or items; values "
            f"built by a template hold at most {templates.MAX_TEMPLATE_VALUE:,} (the limit)",
        ),
        (
            "{{ (7**(10**7)) % 10 }}",
            "** would build a number of about 30,000,000 bits; numbers built by a template hold "
            f"at most {templates.MAX_TEMPLATE_INT_BITS:,} bits (the limit)",
        ),
        (
            "{% for a in 'x' * 999 %}{% for b in 'x' * 999 %}.{% endfor %}{% endfor %}",
            "loops would take 1,001,000 steps (999,000 runs); a template takes at most "
            f"{templates.MAX_TEMPLATE_STEPS:,} (the limit)",
        ),
        (
            "{{ '%0100000000d' % 1 }}",
            "the width 100000000 would build a value of 100,000,000 characters or items; values "
            f"built by a template hold at most {templates.MAX_TEMPLATE_VALUE:,} (the limit)",
        ),
        (
            "{{ customer.id }}\n{{ 'x'|center(100000000) }}",
            "center(100000000) would build a value of 100,000,000 characters or items; values "
            f"built by a template hold at most {templates.MAX_TEMPLATE_VALUE:,} (the limit) "
            "(line 2 of the template)",
        ),
    ],
)
def test_unbounded_templates_are_refused_when_checked_and_when_rendered(
    template: str, message: str
) -> None:
    assert templates.check_template(template) == message
    # A plan compiled before the limits holds it: rendering refuses it too, in a moment
    # (loops by their step budget, which they exhaust before running all they would).
    with pytest.raises(templates.TemplateError) as refused:
        templates.render_template(template, NO_ORDERS)
    if "{% for" in template:
        message = f"the template took more than {templates.MAX_TEMPLATE_STEPS:,} steps"
    assert str(refused.value).startswith(message.removesuffix(" (line 2 of the template)"))


@pytest.mark.parametrize(
    ("template", "seen_when_checked"),
    [
        ("{{ customer.id.center(100000000) }}", False),
        ("{{ '{:>100000000}'.format(customer.id) }}", False),
        ("{{ customer.id|center(100000000) }}", True),
        ("{% set s = customer.id * 2000 %}{{ s ~ s ~ s ~ s ~ s ~ s }}", False),
        ("{{ customer.id * 2000 + customer.id * 2000 + customer.id * 2000 }}", False),
        ("{{ (customer.id * 5000)|replace('w', 'www') }}", False),
        ("{{ [customer.id * 5000, customer.id * 5000, customer.id * 5000]|join }}", False),
        ("{{ customer.id|wordwrap(1, wrapstring='x' * 9000) }}", False),
        ("{{ [customer.id]|batch(100000000, 'x')|list }}", True),
        ("{{ customer.attributes|tojson(indent=100000000) }}", True),
    ],
)
def test_values_built_from_customer_data_are_bounded_before_they_are_built(
    template: str, seen_when_checked: bool
) -> None:
    # Only an argument written in the template can be judged before the data is there.
    problem = templates.check_template(template)
    assert (problem is not None and "(the limit)" in problem) == seen_when_checked
    with pytest.raises(templates.TemplateError, match=r"the limit"):
        templates.render_template(template, NO_ORDERS)


def test_loops_over_data_are_counted_against_the_step_budget() -> None:
    template = "{% for a in customer.tags %}{% for b in customer.tags %}.{% endfor %}{% endfor %}"
    assert templates.check_template(template) is None
    few = {"customer": {"tags": ["t"] * 10}}
    assert templates.render_template(template, few) == "." * 100
    many = {"customer": {"tags": ["t"] * 1_000}}
    with pytest.raises(templates.TemplateError) as stopped:
        templates.render_template(template, many)
    assert str(stopped.value) == (
        f"the template took more than {templates.MAX_TEMPLATE_STEPS:,} steps (loop iterations, "
        "filters and calls; the limit) (line 1)"
    )


def test_the_rendered_text_is_bounded() -> None:
    template = "{% for t in customer.tags %}{{ t }}{% endfor %}"
    long_tags = {"customer": {"tags": ["x" * 5_000] * 3}}
    with pytest.raises(templates.TemplateError) as stopped:
        templates.render_template(template, long_tags)
    assert str(stopped.value).startswith(
        f"the rendered text is over {templates.MAX_MESSAGE_CHARS:,} characters (the limit, "
        "MAX_MESSAGE_CHARS)"
    )


def test_a_template_over_the_size_limit_is_refused() -> None:
    template = "{{ customer.id }}" + "好" * templates.MAX_TEMPLATE_CHARS
    message = (
        f"template is {len(template):,} characters long; a template holds at most "
        f"{templates.MAX_TEMPLATE_CHARS:,} (the limit)"
    )
    assert templates.check_template(template) == message
    with pytest.raises(templates.TemplateError, match="a template holds at most"):
        templates.render_template(template, NO_ORDERS)


def test_deep_template_nesting_is_a_diagnostic_not_a_recursion_error() -> None:
    for template in (
        "{{ " + "(" * 1_000 + "1" + ")" * 1_000 + " }}",
        "{% if 1 %}" * 150 + "x" + "{% endif %}" * 150,
    ):
        assert templates.check_template(template) == (
            f"template nests deeper than {templates.MAX_TEMPLATE_NESTING} levels (the limit)"
        )
        with pytest.raises(templates.TemplateError):
            templates.render_template(template, NO_ORDERS)


# ------------------------------------------------------------------ finding 10: |random


@pytest.mark.parametrize(
    ("template", "kind", "name"),
    [("{{ customer.tags|random }}", "filter", "random"), ("{{ lipsum(1) }}", "function", "lipsum")],
)
def test_nothing_random_renders_in_a_template(template: str, kind: str, name: str) -> None:
    assert templates.check_template(template) == (
        f"{kind} '{name}' is not allowed: a template must render the same text every time "
        "(journeys are replayed from their history), so nothing random or read from the clock"
    )
    with pytest.raises(templates.TemplateError):
        templates.render_template(template, {"customer": {"tags": ["a", "b", "c"]}})
