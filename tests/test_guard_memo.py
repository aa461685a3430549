"""Guards remember their outcomes by the exact data they read (issue 18, item 4): the
same data gives the same outcome without running CEL again; data that differs only in
type (true and 1 are equal in Python, not in CEL), or that is too big to keep, is
evaluated as it is."""

from __future__ import annotations

from typing import Any

from sopflow.language import guards
from sopflow.language.guards import evaluate_guard_outcome


def context(**attributes: Any) -> dict[str, Any]:
    return {"customer": {"attributes": attributes, "tags": attributes.pop("tags", [])}}


def test_data_equal_in_python_but_not_in_cel_is_told_apart() -> None:
    guard = "customer.attributes.flag == 1"
    assert evaluate_guard_outcome(guard, context(flag=1)).value is True
    assert evaluate_guard_outcome(guard, context(flag=True)).value is False  # CEL: true != 1
    assert evaluate_guard_outcome(guard, context(flag=1.0)).value is True
    assert evaluate_guard_outcome(guard, context(flag=2)).value is False


def test_an_outcome_is_kept_for_the_same_data_and_never_for_a_failure() -> None:
    guard = "customer.attributes.level >= 3"
    guards._OUTCOMES.clear()
    assert evaluate_guard_outcome(guard, context(level=5)).value is True
    assert evaluate_guard_outcome(guard, context(level=5, other="x")).value is True
    assert len(guards._OUTCOMES) == 1  # `other` is not read: the same key
    failed = evaluate_guard_outcome(guard, context())
    assert failed.value is False and failed.error is not None
    assert len(guards._OUTCOMES) == 1


def test_data_too_big_to_keep_is_evaluated_every_time() -> None:
    guard = '"vip" in customer.tags'
    guards._OUTCOMES.clear()
    many = [f"tag:{n}" for n in range(guards.KEY_ITEMS_MAX + 1)]
    assert evaluate_guard_outcome(guard, context(tags=many)).value is False
    assert evaluate_guard_outcome(guard, context(tags=[*many, "vip"])).value is True
    assert guards._OUTCOMES == {}


def test_data_that_differs_where_a_path_stops_is_told_apart() -> None:
    # A path that ends early (no such key, not a map) or in a value: each shape of the
    # data a guard reads gives the outcome a fresh evaluation gives, in any order.
    guard = (
        "has(customer.attributes.a) && has(customer.attributes.a.b) && "
        "customer.attributes.a.b == 1 && size(customer.attributes) == 1"
    )
    shapes: list[dict[str, Any]] = [
        {},
        {"a": {}},
        {"a": {"b": 1}},
        {"a": {"b": "1"}},
        {"a": {"b": 1}, "c": 2},
        {"a": "b"},
        {"a": {"b": True}},
        {"a": {"c": 1}},
    ]
    for shapes_in_order in (shapes, shapes[::-1]):
        guards._OUTCOMES.clear()
        found = [evaluate_guard_outcome(guard, context(**shape)) for shape in shapes_in_order]
        fresh = []
        for shape in shapes_in_order:
            guards._OUTCOMES.clear()
            fresh.append(evaluate_guard_outcome(guard, context(**shape)))
        assert found == fresh
    assert [o.value for o in fresh[::-1]] == [False, False, True, False, False, False, False, False]
    # Which of two keys is missing matters as much as the value of the other.
    guard = "has(customer.attributes.a) && !has(customer.attributes.b)"
    guards._OUTCOMES.clear()
    assert evaluate_guard_outcome(guard, context(a=1)).value is True
    assert evaluate_guard_outcome(guard, context(b=1)).value is False


def test_a_list_of_texts_is_told_apart_from_the_same_items_of_other_types() -> None:
    guard = "'1' in customer.tags"
    guards._OUTCOMES.clear()
    assert evaluate_guard_outcome(guard, context(tags=["1", "2"])).value is True
    assert evaluate_guard_outcome(guard, context(tags=[1, 2])).value is False
    assert evaluate_guard_outcome(guard, context(tags=["2", "1"])).value is True
    assert evaluate_guard_outcome(guard, context(tags=[])).value is False
