"""Guards: CEL expressions (the `cel` package, a maintained Rust implementation).

Deterministic and side-effect free, so the workflow evaluates them inside its sandbox.
Bounded: a guard over the static limits of guard_cost is refused when it is checked, and
evaluated only when its cost bound on the customer's data is within MAX_GUARD_COST; a
failure of any kind is a false with its reason (GuardOutcome), never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import cel

from sopflow.language.context import (
    GUARD_ROOTS,
    ORDERS_FIELDS,
    ROOTS,
    SUBJECT_ROOT,
    guard_roots,
    plain,
    sample_context,
)
from sopflow.language.diagnostics import did_you_mean
from sopflow.language.guard_cost import (
    CHARS_PER_UNIT,
    MAX_GUARD_CHARS,
    MAX_GUARD_COST,
    Cost,
    GuardCostError,
    Path,
    Poly,
    check_limits,
    cost,
    functions,
    measure,
    names,
    parse,
    prune,
)
from sopflow.language.subjects import Audience

_FIELD_ACCESS = re.compile(r"\b(customer|group|staff|journey|event)\.([A-Za-z_]\w*)")
_ORDERS_ACCESS = re.compile(r"\bcustomer\.orders\.([A-Za-z_]\w*)")
_OPEN_MAP_ACCESS = re.compile(r"\b(attributes|data)\.([A-Za-z_]\w*)")
MACRO_VARIABLE = re.compile(r"\.(?:exists|all|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")


@dataclass(frozen=True)
class GuardOutcome:
    """What a guard gave: true or false, and why it is false when it could not be evaluated
    (a missing attribute, a division by zero, a limit), for the timeline."""

    value: bool
    error: str | None = None


@dataclass(frozen=True)
class GuardAnalysis:
    """What is known of a guard before it runs: the static limit it is over (if any), and
    the bound of its cost with the context paths whose data that bound depends on."""

    problem: str | None
    cost: Cost


@lru_cache(maxsize=4096)
def compile_guard(source: str) -> Any:
    """Parse once; the program is reused for every customer."""
    return cel.compile(source)


@lru_cache(maxsize=4096)
def analyse_guard(source: str) -> GuardAnalysis:
    """The static limits and the cost bound of a guard (see guard_cost)."""
    nothing = GuardAnalysis(None, Cost(Poly(), frozenset()))
    if len(source) > MAX_GUARD_CHARS:
        too_long = (
            f"guard is {len(source)} characters long; a guard holds at most "
            f"{MAX_GUARD_CHARS} (the limit)"
        )
        return GuardAnalysis(too_long, nothing.cost)
    try:
        program = compile_guard(source)
    except ValueError:
        return nothing  # not CEL: check_guard says why, evaluation fails
    try:
        tree = parse(source)
    except GuardCostError as e:
        return GuardAnalysis(str(e), nothing.cost)
    # The bound is only as good as this parser's reading: it must see what CEL sees.
    named = {f for f in program.functions() if f[0].isalpha()}
    if names(tree) != set(program.variables()) or functions(tree) != named:
        unread = "guard cannot be analysed for its cost (please report it): write it simpler"
        return GuardAnalysis(unread, nothing.cost)
    problem = check_limits(tree)
    bound = cost(tree)
    if problem is None and bound.steps.at() > MAX_GUARD_COST:
        problem = (
            f"guard may take {bound.steps.at():,.0f} steps even on a customer with no data; "
            f"the limit is {MAX_GUARD_COST:,}: use fewer or shorter lists, comprehensions "
            "or patterns"
        )
    return GuardAnalysis(problem, bound)


def evaluate_guard(source: str, context: Mapping[str, Any]) -> bool:
    """True only when the guard evaluates to true; an error (a missing attribute) is false."""
    return evaluate_guard_outcome(source, context).value


# Outcomes of guards already evaluated, by the guard and the exact data it reads: a guard
# is a pure function of that data, and condition triggers and exit rules are evaluated
# again after every step on data that rarely changed (a third of some simulations' time).
# Bounded in entries and in the data a key may hold (a guard reading a long list or text
# is evaluated each time); the oldest go first.
OUTCOMES_KEPT = 4096
KEY_ITEMS_MAX = 64
KEY_CHARS_MAX = 1024
_OUTCOMES: dict[tuple[str, Any], GuardOutcome] = {}


class _NotKept(Exception):
    """The data is too big (or not hashable) to be a key: evaluated, not remembered."""


def evaluate_guard_outcome(source: str, context: Mapping[str, Any]) -> GuardOutcome:
    """Evaluate within the cost limit; never raises: any failure is a false with its reason."""
    try:
        analysis = analyse_guard(source)
    except Exception as e:
        return GuardOutcome(False, describe_error(e))
    if analysis.problem:
        return GuardOutcome(False, f"guard not evaluated: {analysis.problem}")
    try:
        key = (source, _data_key(context, analysis.cost.paths))
        known = _OUTCOMES.get(key)
    except Exception:
        return _evaluate(source, context, analysis)
    if known is not None:
        return known
    outcome = _evaluate(source, context, analysis)
    if outcome.error is None:  # only what the data decided (never a failure) is kept
        _remember(key, outcome)
    return outcome


class _Frozen:
    """A hashable copy of guard data that tells types apart (True, 1 and 1.0 are equal in
    Python, not in CEL), within KEY_ITEMS_MAX items and KEY_CHARS_MAX characters."""

    def __init__(self) -> None:
        self.items = 0
        self.chars = 0

    def of(self, value: Any) -> Any:
        self.items += 1
        if self.items > KEY_ITEMS_MAX:
            raise _NotKept
        if isinstance(value, dict):
            return (dict, tuple((k, self.of(v)) for k, v in value.items()))
        if isinstance(value, list | tuple):
            if all(v.__class__ is str for v in value):
                # A list of texts (tags, members), counted as item by item, at once.
                self.items += len(value)
                self.chars += sum(map(len, value))
                if self.items > KEY_ITEMS_MAX or self.chars > KEY_CHARS_MAX:
                    raise _NotKept
                return (list, str, tuple(value))
            return (list, tuple(self.of(v) for v in value))
        if isinstance(value, str):
            self.chars += len(value)
            if self.chars > KEY_CHARS_MAX:
                raise _NotKept
        return (type(value), value)


def _data_key(context: Mapping[str, Any], paths: frozenset[Path]) -> tuple[Any, ...]:
    """What `prune` would give for `paths`, as a key (without building it): for each path,
    where the walk down it stops and the value there; the same keys, the same pruned data."""
    frozen = _Frozen()
    key = []
    for path in _sorted_paths(paths):
        source: Any = context
        last = len(path) - 1
        for depth, part in enumerate(path):
            # A dict is told first: the Mapping check is an ABC's, slower by far.
            if not (source.__class__ is dict or isinstance(source, Mapping)) or part not in source:
                key.append((depth, None))
                break
            source = source[part]
            if depth == last or not (source.__class__ is dict or isinstance(source, Mapping)):
                key.append((depth, frozen.of(plain(source))))
                break
    return tuple(key)


@lru_cache(maxsize=1024)
def _sorted_paths(paths: frozenset[Path]) -> tuple[Path, ...]:
    """A guard's paths in a fixed order (a key is made for every evaluation)."""
    return tuple(sorted(paths))


def _remember(key: tuple[str, Any], outcome: GuardOutcome) -> None:
    try:
        while len(_OUTCOMES) >= OUTCOMES_KEPT:
            del _OUTCOMES[next(iter(_OUTCOMES))]
    except (KeyError, RuntimeError, StopIteration):  # another thread trimmed it meanwhile
        pass
    _OUTCOMES[key] = outcome


def _evaluate(source: str, context: Mapping[str, Any], analysis: GuardAnalysis) -> GuardOutcome:
    try:
        if analysis.cost.steps.reads_data:
            measures = measure(context, analysis.cost.paths)
            steps = analysis.cost.steps.at(measures)
            if steps > MAX_GUARD_COST:
                return GuardOutcome(False, _too_costly(steps, measures))
        program = compile_guard(source)
        # Convert only the data the guard reads: the interpreter takes about 1.5 us per
        # item to convert, more than most guards take to evaluate.
        paths = frozenset(p for p in analysis.cost.paths if p[0] in GUARD_ROOTS)
        result = _run(program, cel_values(prune(context, paths)))
    except Exception as e:  # anything at all: a guard must never fail the workflow task
        return GuardOutcome(False, describe_error(e))
    if isinstance(result, bool):
        return GuardOutcome(result)
    return GuardOutcome(False, f"guard gives {type(result).__name__}, not true or false")


def _too_costly(steps: float, measures: dict[str, float]) -> str:
    largest = max((k for k in measures if k.startswith("n:")), key=measures.__getitem__)
    return (
        f"guard not evaluated: on this customer's data it may take {steps:,.0f} steps; the "
        f"limit is {MAX_GUARD_COST:,} ({largest[2:]} holds {measures[largest]:,.0f} items "
        f"or units of {CHARS_PER_UNIT} characters)"
    )


def _run(program: Any, values: dict[str, Any]) -> Any:
    try:
        return program.execute(values)
    except Exception:
        raise
    except BaseException as e:
        # A panic inside the Rust interpreter arrives as pyo3's PanicException, which
        # derives from BaseException; only that one is turned into an ordinary error.
        if type(e).__name__ == "PanicException":
            raise RuntimeError(f"the CEL interpreter failed: {e}") from e
        raise


def describe_error(error: BaseException) -> str:
    """One line for the timeline: what kind of failure, and CEL's own first line."""
    first_line = str(error).split("\n")[0].strip() or type(error).__name__
    if isinstance(error, KeyError):
        return f"guard failed: no value for {first_line}"
    if isinstance(error, ZeroDivisionError):
        return "guard failed: division by zero"
    return f"guard failed: {first_line}"


def cel_values(value: Any) -> Any:
    """CEL takes timestamps only in UTC: a zoneinfo-aware datetime fails to convert."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {k: cel_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cel_values(v) for v in value]
    return value


def other_audience_root(name: str, audience: Audience) -> str | None:
    """The message for a subject root of another audience (`customer` in a group
    playbook), or None when the name is no such root."""
    if name not in SUBJECT_ROOT.values() or name == SUBJECT_ROOT[audience]:
        return None
    return (
        f"'{name}' cannot exist in a playbook with audience {audience.value}: "
        f"it reads '{SUBJECT_ROOT[audience]}'"
    )


def check_guard(
    source: str, *, with_event: bool, audience: Audience = Audience.CUSTOMER
) -> str | None:
    """A message saying why the guard cannot work, or None when it type-checks."""
    if len(source) > MAX_GUARD_CHARS:
        return analyse_guard(source).problem  # before CEL's parser reads all of it
    try:
        program = compile_guard(source)
    except ValueError as e:
        first_line = str(e).split("\n")[0]
        return f"guard does not parse: {first_line}"
    problem = analyse_guard(source).problem
    if problem:
        return problem
    bound = set(MACRO_VARIABLE.findall(source))
    roots = guard_roots(audience)
    roots = roots if with_event else roots - {"event"}
    for name in program.variables():
        if name not in roots and name not in bound:
            if name == "event":
                return "guard reads 'event', but no event is at hand here (only in event triggers)"
            elsewhere = other_audience_root(name, audience)
            if elsewhere:
                return f"guard reads {elsewhere}"
            return f"guard reads unknown name '{name}'{did_you_mean(name, roots)}"
    for root, field in _FIELD_ACCESS.findall(source):
        if root in roots and field not in ROOTS[root]:
            return f"unknown field '{root}.{field}'{did_you_mean(field, ROOTS[root])}"
    for field in _ORDERS_ACCESS.findall(source):
        if field not in ORDERS_FIELDS:
            return f"unknown field 'customer.orders.{field}'{did_you_mean(field, ORDERS_FIELDS)}"
    return _type_check(program, source, audience)


def _type_check(program: Any, source: str, audience: Audience) -> str | None:
    # Open maps (attributes, event data) have no declared types: the guard type-checks
    # if it evaluates without a type error for at least one type of their values.
    open_keys = {key for _, key in _OPEN_MAP_ACCESS.findall(source)}
    last_error = None
    for sample in ("text", 1, 1.5, True):
        try:
            result = _run(program, cel_values(sample_context(open_keys, sample, audience)))
        except TypeError as e:
            last_error = str(e).split(". ")[0]
            continue
        except Exception:
            return None
        if not isinstance(result, bool):
            return f"guard must be true or false, but gives {type(result).__name__}"
        return None
    return f"guard does not type-check: {last_error}"
