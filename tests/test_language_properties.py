"""Generated guards and templates: checking never raises, and what is accepted evaluates or
renders within its bounds, failing only with the typed error.

Guards come from a small typed grammar (ints, lists of ints, booleans, the comprehension
macros) and are also evaluated by a reference interpreter written here over the parsed
tree: it counts the work in the units of guard_cost, so the cost bound is checked against
operations counted, not against a clock; and its answer must equal the `cel` package's,
which checks that guard_cost reads a guard as CEL does. Templates come from a small
grammar of text, expressions, filters, loops and conditions; the render's own step count
is compared with what check_template counted.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sopflow.language import guard_cost, guards, templates
from sopflow.language.guard_cost import CHARS_PER_UNIT, Node

SETTINGS = settings(
    max_examples=150,
    deadline=None,  # no timing: bounds are asserted by counting
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)

# ----------------------------------------------------------------------------- guards

DATA_INT = "customer.orders.count"
DATA_LIST = "customer.attributes.items"
MACROS = ("all", "exists", "exists_one")


@st.composite
def int_expr(draw: st.DrawFn, depth: int, names: tuple[str, ...]) -> str:
    atoms = [st.integers(0, 9).map(str), st.just(DATA_INT)]
    if names:
        atoms.append(st.sampled_from(names))
    if depth <= 0:
        return draw(st.one_of(atoms))
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(st.one_of(atoms))
    if choice <= 2:
        op = draw(st.sampled_from(["+", "-", "*"]))
        return f"({draw(int_expr(depth - 1, names))} {op} {draw(int_expr(depth - 1, names))})"
    if choice == 3:
        return f"size({draw(list_expr(depth - 1, names))})"
    if choice == 4:
        condition = draw(bool_expr(depth - 1, names))
        yes, no = draw(int_expr(depth - 1, names)), draw(int_expr(depth - 1, names))
        return f"({condition} ? {yes} : {no})"
    return draw(st.one_of(atoms))


@st.composite
def list_expr(draw: st.DrawFn, depth: int, names: tuple[str, ...]) -> str:
    literal = st.lists(st.integers(0, 9).map(str), max_size=70).map(
        lambda items: "[" + ", ".join(items) + "]"
    )
    if depth <= 0:
        return draw(st.one_of(literal, st.just(DATA_LIST)))
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.one_of(literal, st.just(DATA_LIST)))
    if choice == 1:
        return f"({draw(list_expr(depth - 1, names))} + {draw(list_expr(depth - 1, names))})"
    name = f"v{len(names)}"
    source = draw(list_expr(depth - 1, names))
    if choice == 2:
        return f"{source}.map({name}, {draw(int_expr(depth - 1, (*names, name)))})"
    if choice == 3:
        return f"{source}.filter({name}, {draw(bool_expr(depth - 1, (*names, name)))})"
    return draw(literal)


@st.composite
def bool_expr(draw: st.DrawFn, depth: int, names: tuple[str, ...]) -> str:
    if depth <= 0:
        left, right = draw(int_expr(0, names)), draw(int_expr(0, names))
        return f"{left} {draw(st.sampled_from(['==', '!=', '<']))} {right}"
    choice = draw(st.integers(0, 5))
    if choice == 0:
        left, right = draw(int_expr(depth - 1, names)), draw(int_expr(depth - 1, names))
        return f"{left} {draw(st.sampled_from(['==', '!=', '<', '<=']))} {right}"
    if choice == 1:
        return f"{draw(int_expr(depth - 1, names))} in {draw(list_expr(depth - 1, names))}"
    if choice == 2:
        op = draw(st.sampled_from(["&&", "||"]))
        return f"({draw(bool_expr(depth - 1, names))} {op} {draw(bool_expr(depth - 1, names))})"
    if choice == 3:
        return f"!({draw(bool_expr(depth - 1, names))})"
    if choice == 4:
        return f"{draw(list_expr(depth - 1, names))} == {draw(list_expr(depth - 1, names))}"
    name = f"v{len(names)}"
    source = draw(list_expr(depth - 1, names))
    macro = draw(st.sampled_from(MACROS))
    return f"{source}.{macro}({name}, {draw(bool_expr(depth - 1, (*names, name)))})"


GUARDS = st.integers(1, 4).flatmap(lambda depth: bool_expr(depth, ()))


def customer(items: list[int], count: int) -> dict[str, Any]:
    return {"customer": {"orders": {"count": count}, "attributes": {"items": items}}}


CONTEXTS = st.builds(customer, st.lists(st.integers(0, 9), max_size=40), st.integers(0, 5))


class RefError(Exception):
    pass


class Reference:
    """CEL's meaning for the grammar above, counting work in guard_cost's units."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self.steps = 0.0

    def run(self, node: Node, scope: dict[str, Any]) -> Any:
        self.steps += 1
        kind, text, children = node.kind, node.text, node.children
        if kind == "literal":
            return {"true": True, "false": False}.get(text, int(node.value or 0))
        if kind == "ident":
            return scope[text] if text in scope else self.context[text]
        if kind == "select":
            value = self.run(children[0], scope)
            if not isinstance(value, dict) or text not in value:
                raise RefError(f"no field {text}")
            return value[text]
        if kind == "list":
            items = [self.run(child, scope) for child in children]
            self.steps += len(items)
            return items
        if kind == "unary":
            return not self.run(children[0], scope)
        if kind == "cond":
            condition = self.run(children[0], scope)
            yes, no = self.run(children[1], scope), self.run(children[2], scope)
            return yes if condition else no
        if kind == "binary":
            return self.binary(text, children, scope)
        if kind == "call":
            value = self.run(children[0], scope)
            self.steps += self.size(value)
            return len(value)
        if kind == "comprehension":
            return self.comprehension(node, scope)
        raise AssertionError(f"not in the grammar: {kind}")

    def binary(self, op: str, children: tuple[Node, ...], scope: dict[str, Any]) -> Any:
        left, right = self.run(children[0], scope), self.run(children[1], scope)
        if op in ("&&", "||"):
            return (left and right) if op == "&&" else (left or right)
        if op == "+" and isinstance(left, list):
            self.steps += len(left) + len(right)
            return left + right
        if op in ("+", "-", "*"):
            result = {"+": left + right, "-": left - right, "*": left * right}[op]
            if not -(2**63) <= result < 2**63:
                raise RefError("overflow")
            return result
        if op == "in":
            for item in right:
                self.steps += 1 + min(self.total(left), self.total(item))
                if item == left:
                    return True
            return False
        self.steps += min(self.total(left), self.total(right))
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        return left < right if op == "<" else left <= right

    def comprehension(self, node: Node, scope: dict[str, Any]) -> Any:
        items = self.run(node.children[0], scope)
        results = []
        for item in items:
            self.steps += 2
            results.append(self.run(node.children[1], {**scope, node.variable: item}))
        if node.text == "map":
            self.steps += len(items) * sum(1 + self.total(r) for r in results)
            return results
        if node.text == "filter":
            kept = [item for item, keep in zip(items, results, strict=True) if keep]
            self.steps += len(items) * sum(1 + self.total(k) for k in kept)
            return kept
        if node.text == "all":
            return all(results)
        if node.text == "exists":
            return any(results)
        return sum(1 for r in results if r) == 1

    @staticmethod
    def size(value: Any) -> int:
        if isinstance(value, str):
            return max(1, math.ceil(len(value) / CHARS_PER_UNIT))
        return len(value) if isinstance(value, list | dict) else 1

    def total(self, value: Any) -> int:
        if isinstance(value, list):
            return 1 + sum(self.total(item) for item in value)
        return 1


@SETTINGS
@given(GUARDS, CONTEXTS)
def test_accepted_guards_stay_within_their_bound_and_agree_with_cel(
    guard: str, context: dict[str, Any]
) -> None:
    outcome = guards.evaluate_guard_outcome(guard, context)
    assert isinstance(outcome.value, bool)
    # (check_guard may refuse more: its type check samples attributes as scalars only.)
    analysis = guards.analyse_guard(guard)
    if analysis.problem is not None:
        assert outcome == guards.GuardOutcome(False, f"guard not evaluated: {analysis.problem}")
        return
    bound = analysis.cost.steps.at(guard_cost.measure(context, analysis.cost.paths))
    reference = Reference(context)
    try:
        expected: Any = reference.run(guard_cost.parse(guard), {})
    except RefError:
        expected = None
    assert reference.steps <= bound, (guard, reference.steps, bound)
    if bound > guard_cost.MAX_GUARD_COST:
        assert outcome.error is not None and outcome.error.startswith("guard not evaluated")
    elif expected is not None:
        assert outcome == guards.GuardOutcome(expected), guard


CEL_TOKENS = [
    *"()[]{}.,!?:+-*/%<>",
    *["==", "!=", "&&", "||", "<=", "in", "true", "null", "1", "0", "'a'", '"b"', "x"],
    *["customer", "customer.tags", "event", "event.data", "now", "size", ".all(", ".map("],
    *[".exists(", ".filter(", ".matches(", "'(a{99}){99}'", "[0,1,2,3,4,5,6,7,8,9]"],
]
NOISE = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(CEL_TOKENS), max_size=40).map(" ".join),
)


@SETTINGS
@given(NOISE)
def test_no_text_makes_checking_or_evaluating_a_guard_raise(text: str) -> None:
    problem = guards.check_guard(text, with_event=True)
    assert problem is None or isinstance(problem, str)
    outcome = guards.evaluate_guard_outcome(text, {"customer": {"tags": ["a"]}, "event": {}})
    assert isinstance(outcome.value, bool)


# ----------------------------------------------------------------------------- templates

HUGE = 100_000_000
NUMBERS = st.sampled_from([0, 1, 2, 3, 7, 40, HUGE]).map(str)


@st.composite
def template_expr(draw: st.DrawFn, depth: int, names: tuple[str, ...]) -> str:
    atoms = [
        st.sampled_from(["customer.id", "customer.orders.count", "customer.tags", "'ab'"]),
        NUMBERS,
    ]
    if names:
        atoms.append(st.sampled_from(names))
    if depth <= 0:
        return draw(st.one_of(atoms))
    inner = template_expr(depth - 1, names)
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.one_of(atoms))
    if choice == 1:
        op = draw(st.sampled_from(["+", "-", "*", "/", "%", "**", "~", "//"]))
        return f"({draw(inner)} {op} {draw(inner)})"
    if choice == 2:
        name = draw(
            st.sampled_from(
                [
                    "upper", "length", "first", "string", "list", "sort", "unique", "int",
                    "join(',')", "replace('a', 'bbb')", "default('x')", "random",
                    f"center({draw(NUMBERS)})", f"truncate({draw(NUMBERS)})",
                    f"indent({draw(NUMBERS)})", f"batch({draw(NUMBERS)}, 'x')",
                    f"format({draw(inner)})", f"tojson(indent={draw(NUMBERS)})",
                ]
            )
        )  # fmt: skip
        return f"{draw(inner)}|{name}"
    if choice == 3:
        method = draw(
            st.sampled_from(["upper()", f"center({draw(NUMBERS)})", "replace('a', 'bb')"])
        )
        return f"({draw(inner)}).{method}"
    return f"({draw(inner)} if {draw(inner)} else {draw(inner)})"


@st.composite
def template_body(draw: st.DrawFn, depth: int, names: tuple[str, ...]) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 4 if depth > 0 else 1))
        if choice == 0:
            pieces.append(draw(st.sampled_from(["你好，", "x", " ", "{#c#}"])))
        elif choice == 1:
            pieces.append("{{ " + draw(template_expr(2, names)) + " }}")
        elif choice == 2:
            name = f"v{len(names)}"
            iterable = draw(
                st.sampled_from(
                    ["customer.tags", "customer.id", f"'ab' * {draw(NUMBERS)}", "[1, 2, 3]"]
                )
            )
            body = draw(template_body(depth - 1, (*names, name)))
            pieces.append(f"{{% for {name} in {iterable} %}}{body}{{% endfor %}}")
        elif choice == 3:
            condition = draw(template_expr(1, names))
            yes, no = draw(template_body(depth - 1, names)), draw(template_body(depth - 1, names))
            pieces.append(f"{{% if {condition} %}}{yes}{{% else %}}{no}{{% endif %}}")
        else:
            pieces.append(f"{{% set w = {draw(template_expr(1, names))} %}}{{{{ w }}}}")
    return "".join(pieces)


TEMPLATES = st.integers(0, 3).flatmap(lambda depth: template_body(depth, ()))


def template_context(tags: list[str], identifier: str) -> dict[str, Any]:
    return {"customer": {"id": identifier, "orders": {"count": 0}, "tags": tags}}


@SETTINGS
@given(
    TEMPLATES,
    st.builds(
        template_context,
        st.lists(st.text("ab", max_size=3), max_size=60),
        st.text("ab", min_size=1, max_size=30),
    ),
)
def test_accepted_templates_render_within_the_limits_or_fail_typed(
    template: str, context: dict[str, Any]
) -> None:
    if templates.check_template(template) is not None:
        return
    try:
        text, steps = templates.render_counted(template, context)
    except templates.TemplateError as e:
        assert type(e) is templates.TemplateError
        return
    assert len(text) <= templates.MAX_MESSAGE_CHARS
    assert steps <= templates.MAX_TEMPLATE_STEPS


@SETTINGS
@given(TEMPLATES, st.lists(st.text("ab", max_size=1), max_size=1))
def test_a_render_takes_no_more_steps_than_the_check_counted(
    template: str, tags: list[str]
) -> None:
    # With at most one item in every collection of the data, loops over data run at most
    # once, as the check counts them: the render's own count must not exceed the check's.
    if templates.check_template(template) is not None:
        return
    try:
        _, steps = templates.render_counted(template, template_context(tags, "a"))
    except templates.TemplateError:
        return
    assert steps <= templates.static_steps(template), template


JINJA_TOKENS = [
    *["{{", "}}", "{%", "%}", "for", "in", "if", "endfor", "endif", "x", "|", "(", ")"],
    *["customer", ".", "*", "'a'", "9999", "~", "random", "set", "=", "macro", "include"],
]


@SETTINGS
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(st.sampled_from(JINJA_TOKENS), max_size=40).map(" ".join),
    )
)
def test_no_text_makes_checking_or_rendering_a_template_raise_another_error(text: str) -> None:
    problem = templates.check_template(text)
    assert problem is None or isinstance(problem, str)
    try:
        templates.render_template(text, template_context(["a"], "c"))
    except templates.TemplateError as e:
        assert type(e) is templates.TemplateError
