"""Operator content at the limits: the costliest playbook, guard and template still accepted.

Used by the API test (a deploy that must not stall the event loop) and to time the limits
for docs/decisions.md: `.venv/bin/python -m tests.worst_case`.
"""

from __future__ import annotations

import time
import timeit

from sopflow.language.yaml_positions import MAX_YAML_CHARS

HEADER = """apiVersion: sopflow/v1
kind: Playbook
metadata: {name: worst_case}
enrol: {event: contact.added}
stages:
"""


def digits(count: int, start: int = 0) -> str:
    return "[" + ",".join(str(start + i) for i in range(count)) + "]"


def worst_guard(salt: int = 0) -> str:
    """Two nested comprehensions over literal lists: about the most work a guard may do."""
    return f"{digits(26, salt)}.all(x, {digits(26)}.all(y, x + y != customer.orders.count))"


def worst_template(salt: int = 0) -> str:
    """Two nested loops, each step building a value: about the most a render may do."""
    return (
        "{% for a in 'abcdefghi' * 3 %}{% for b in 'klmnopqrstuvwxyz' * 2 %}"
        f"{{{{ a ~ b }}}}{{% endfor %}}{{% endfor %}}{salt}"
    )


def worst_case_playbook() -> str:
    """As many stages as fit under the size limit, each with a worst guard and template."""
    stages: list[str] = []
    size = len(HEADER)
    index = 0
    while True:
        stage = (
            f"  s{index}:\n"
            f"    on_enter:\n"
            f'      - send: {{channel: log, text: "{worst_template(index)}"}}\n'
            f"    triggers:\n"
            f"      - event: order.paid\n"
            f'        when: "{worst_guard(index)}"\n'
            f"        goto: s{index + 1}\n"
            f"      - after: 1d\n"
            f"        goto: s{index + 1}\n"
        )
        end = f"  s{index + 1}: {{end: true}}\n"
        if size + len(stage) + len(end) > MAX_YAML_CHARS:
            return HEADER + "".join(stages) + end.replace(f"s{index + 1}", f"s{index}")
        stages.append(stage)
        size += len(stage)
        index += 1


def main() -> None:
    from sopflow.language.compiler import compile_playbook
    from sopflow.language.guards import analyse_guard, evaluate_guard_outcome
    from sopflow.language.templates import render_template

    context = {"customer": {"orders": {"count": 1000}}}
    guard, template = worst_guard(), worst_template()
    print(f"worst guard: {analyse_guard(guard).cost.steps.at():,.0f} steps (bound)")
    assert evaluate_guard_outcome(guard, context).value
    runs = timeit.repeat(lambda: evaluate_guard_outcome(guard, context), number=20, repeat=5)
    print(f"  evaluated in {min(runs) / 20 * 1e3:.3f} ms")
    render_template(template, context)
    seconds = min(timeit.repeat(lambda: render_template(template, context), number=5, repeat=5))
    print(f"worst template: rendered in {seconds / 5 * 1e3:.2f} ms")
    text = worst_case_playbook()
    started = time.perf_counter()
    compile_playbook(text, filename="worst_case.yaml")
    seconds = time.perf_counter() - started
    print(f"worst playbook: {len(text):,} characters compiled in {seconds:.2f} s")


if __name__ == "__main__":
    main()
