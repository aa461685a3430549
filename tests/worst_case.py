"""Operator content at the limits: the costliest playbook, guard and template still accepted.

Used by the API test (a deploy that must not stall the event loop) and to time the limits
for docs/decisions.md: `.venv/bin/python -m tests.worst_case`.
"""

from __future__ import annotations

import time
import timeit
from typing import Any

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


GUARD_SHAPES = {
    "nested all over literals": worst_guard(),
    "map over a literal": f"{digits(64)}.map(x, x * 2).size() > 0",
    "concatenated literals": " + ".join([digits(30)] * 6) + " == []",
    "phone pattern": "customer.attributes.phone.matches('^1[3-9]\\\\d{9}$')",
    "Unicode word pattern": "customer.attributes.phone.matches('\\\\w+@')",
    "exists over 200 tags": "customer.tags.exists(t, t.startsWith('vip'))",
    "in over 200 tags": "customer.id in customer.tags",
    "exists over 300 items": "customer.attributes.items.exists(a, a == -1)",
    "tags all in tags (refused)": "customer.tags.all(t, t in customer.tags)",
}
CUSTOMER = {
    "customer": {
        "id": "wx_" + "c" * 37,
        "orders": {"count": 1000},
        "tags": [f"group{i}:value{i}" for i in range(200)],
        "attributes": {"items": list(range(300)), "phone": "13912345678"},
    }
}


def time_guards() -> None:
    """Each guard's bound against its time (best of 5): the time per step of the bound."""
    import cel

    from sopflow.language.guard_cost import MAX_GUARD_COST, measure, prune
    from sopflow.language.guards import analyse_guard, cel_values, compile_guard

    trivial = cel.compile("true")
    for name, guard in GUARD_SHAPES.items():
        analysis = analyse_guard(guard)
        assert analysis.problem is None, analysis.problem
        steps = analysis.cost.steps.at(measure(CUSTOMER, analysis.cost.paths))
        values = cel_values(prune(CUSTOMER, analysis.cost.paths))
        program = compile_guard(guard)
        # Converting the data for the interpreter is timed apart: it is the same for any
        # guard reading that data, about 1.5 us an item.
        convert = _best(lambda v=values: trivial.execute(v))
        total = _best(lambda p=program, v=values: p.execute(v))
        work = max(total - convert, 0.0)
        verdict = "refused when run" if steps > MAX_GUARD_COST else "runs"
        print(
            f"  {name:28} bound {steps:>12,.0f} steps  {work * 1e3:7.3f} ms "
            f"(+{convert * 1e3:.3f} ms converting)  {work * 1e9 / steps:6.1f} ns/step  {verdict}"
        )


def _best(run: Any) -> float:
    return min(timeit.repeat(run, number=3, repeat=5)) / 3


async def healthz_during_deploy(on_loop: bool) -> str:
    """/healthz answers while the worst accepted playbook is deployed through the API."""
    import asyncio
    import statistics
    import tempfile
    from pathlib import Path

    import httpx

    from api.app import create_app
    from api.routes import playbooks
    from sopflow.settings import Settings
    from sopflow.store.database import Database
    from sopflow.store.keys import Role, create_key

    settings = Settings(home=Path(tempfile.mkdtemp()))
    database = Database.from_settings(settings)
    key, _ = create_key(database, Role.OPERATOR, "measure")
    app = create_app(settings, temporal=None, database=database)  # type: ignore[arg-type]
    if on_loop:  # what the route did before: compile on the event loop

        async def same_thread(function: Any, *args: Any) -> Any:
            return function(*args)

        playbooks.asyncio.to_thread = same_thread  # type: ignore[assignment]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"}
    latencies: list[float] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sopflow") as http:
        await http.get("/healthz")
        text = worst_case_playbook()
        deploy = asyncio.create_task(http.post("/v1/playbooks", content=text, headers=headers))
        started = time.perf_counter()
        while not deploy.done():
            asked = time.perf_counter()
            await http.get("/healthz")
            latencies.append(time.perf_counter() - asked)
            await asyncio.sleep(0.01)
        response = await deploy
    return (
        f"deploy {response.status_code} in {time.perf_counter() - started:.2f} s; /healthz "
        f"answered {len(latencies)} times, median {statistics.median(latencies) * 1e3:.1f} ms, "
        f"slowest {max(latencies) * 1e3:.1f} ms"
    )


def main() -> None:
    import asyncio

    from sopflow.language.compiler import compile_playbook
    from sopflow.language.guards import analyse_guard, evaluate_guard_outcome
    from sopflow.language.templates import render_counted

    print("guards (bound in steps, evaluation time):")
    time_guards()
    guard, template = worst_guard(), worst_template()
    assert evaluate_guard_outcome(guard, CUSTOMER).value
    runs = timeit.repeat(lambda: evaluate_guard_outcome(guard, CUSTOMER), number=20, repeat=5)
    bound = analyse_guard(guard).cost.steps.at()
    print(f"worst guard: bound {bound:,.0f} steps, evaluated in {min(runs) / 20 * 1e3:.3f} ms")
    _, steps = render_counted(template, CUSTOMER)
    runs = timeit.repeat(lambda: render_counted(template, CUSTOMER), number=5, repeat=5)
    print(f"worst template: {steps:,} steps, rendered in {min(runs) / 5 * 1e3:.2f} ms")
    text = worst_case_playbook()
    started = time.perf_counter()
    compile_playbook(text, filename="worst_case.yaml")
    seconds = time.perf_counter() - started
    print(f"worst playbook: {len(text):,} characters compiled in {seconds:.2f} s")
    print(f"deploying it, compiled in a thread: {asyncio.run(healthz_during_deploy(False))}")
    print(f"deploying it, compiled on the loop: {asyncio.run(healthz_during_deploy(True))}")


if __name__ == "__main__":
    main()
