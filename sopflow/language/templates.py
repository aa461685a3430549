"""Message templates: Jinja2's sandbox with strict undefined, over the guards' context.

Bounded: a template is refused when it is checked if it is too long, nests too deeply,
nests loops, uses what cannot render the same twice (`random`, `lipsum`) or computes a
value over the limits from constants (`'x' * 100000000`); when it renders, repetition,
powers, concatenation, widths and every filter or call are checked before they build a
value, the loop iterations and calls of one render are counted against a budget, and the
text is cut off at MAX_MESSAGE_CHARS. Whatever goes wrong raises TemplateError, never
anything else, with a message an operator can read.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from sopflow.language.context import ORDERS_FIELDS, ROOTS, SUBJECT_ROOT, template_roots
from sopflow.language.diagnostics import did_you_mean
from sopflow.language.subjects import Audience

MAX_TEMPLATE_CHARS = 4_000  # the source (a WeCom text holds 2,048 bytes)
MAX_MESSAGE_CHARS = 10_000  # the rendered text
MAX_TEMPLATE_VALUE = 10_000  # characters of a text, items of a list, built while rendering
MAX_TEMPLATE_INT_BITS = 1_024  # numbers built by * and ** (about 308 digits)
MAX_TEMPLATE_NESTING = 16  # brackets and blocks inside one another
MAX_TEMPLATE_LOOP_NESTING = 2  # for loops inside one another
MAX_TEMPLATE_STEPS = 2_000  # loop iterations, filters and calls in one render (~5 us each)
MAX_JSON_INDENT = 16

# Nothing that reads randomness or the clock: a journey is replayed from its history, and
# a template must render the same text every time (the clock is `now`, from the workflow).
NONDETERMINISTIC = {"random": "filter", "lipsum": "function"}
_BLOCKS = frozenset({"for", "if", "macro", "call", "filter", "with", "block", "autoescape"})


class TemplateLimitError(SecurityError):
    """A template that went over one of the limits while rendering."""


@dataclass
class _Budget:
    steps: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("sopflow_template_budget", default=None)


def _charge(steps: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is None:  # folding constants while compiling: values are still checked
        return
    budget.steps += steps
    if budget.steps > MAX_TEMPLATE_STEPS:
        raise TemplateLimitError(
            f"the template took more than {MAX_TEMPLATE_STEPS:,} steps (loop iterations, "
            "filters and calls; the limit)"
        )


# ----------------------------------------------------------------------------- value checks


def _length(value: Any) -> int | None:
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    return None


def _checked(value: Any) -> Any:
    size = _length(value)
    if size is not None and size > MAX_TEMPLATE_VALUE:
        kind = "text" if isinstance(value, str | bytes) else "list"
        raise TemplateLimitError(
            f"a {kind} of {size:,} {'characters' if kind == 'text' else 'items'}: values "
            f"built by a template hold at most {MAX_TEMPLATE_VALUE:,} (the limit)"
        )
    return value


def _at_most(size: int, what: str) -> None:
    if size > MAX_TEMPLATE_VALUE:
        raise TemplateLimitError(
            f"{what} would build a value of {size:,} characters or items; values built by a "
            f"template hold at most {MAX_TEMPLATE_VALUE:,} (the limit)"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for sequence, times in ((left, right), (right, left)):
            size = _length(sequence)
            if size is not None and _is_int(times):
                _at_most(size * max(times, 0), "repeating with *")
        if _is_int(left) and _is_int(right):
            bits = left.bit_length() + right.bit_length()
            if bits > MAX_TEMPLATE_INT_BITS:
                raise TemplateLimitError(
                    f"* would build a number of about {bits:,} bits; numbers built by a "
                    f"template hold at most {MAX_TEMPLATE_INT_BITS:,} bits (the limit)"
                )
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            bits = left.bit_length() * right
            if bits > MAX_TEMPLATE_INT_BITS:
                raise TemplateLimitError(
                    f"** would build a number of about {bits:,} bits; numbers built by a "
                    f"template hold at most {MAX_TEMPLATE_INT_BITS:,} bits (the limit)"
                )
    elif operator == "+":
        sizes = (_length(left), _length(right))
        if sizes[0] is not None and sizes[1] is not None:
            _at_most(sizes[0] + sizes[1], "joining with +")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_FORMAT_NUMBER = re.compile(r"\d+")


def _check_printf(pattern: str) -> None:
    for width, precision in _PRINTF.findall(pattern):
        for number in (width, precision):
            if number == "*":
                raise TemplateLimitError("a width given by a value ('%*d') is not allowed")
            if number and int(number) > MAX_TEMPLATE_VALUE:
                _at_most(int(number), f"the width {number}")


def _check_format(pattern: str) -> None:
    for _, field, spec, _ in string.Formatter().parse(pattern):
        if field is None or not spec:
            continue
        if "{" in spec:
            raise TemplateLimitError("a width given by a value ('{:{w}}') is not allowed")
        for number in _FORMAT_NUMBER.findall(spec):
            _at_most(int(number), f"the width {number}")


# ----------------------------------------------------------------------------- calls


def _check_str_method(method: Any, args: tuple[Any, ...]) -> None:
    """Methods of a text that can make it much longer, checked before they run."""
    text = getattr(method, "__self__", None)
    if not isinstance(text, str):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        _at_most(args[0], f"{name}({args[0]})")
    elif name == "expandtabs":
        size = args[0] if args and _is_int(args[0]) else 8
        _at_most(len(text) + text.count("\t") * size, "expandtabs")
    elif name == "replace" and len(args) >= 2:
        _at_most(_replaced_length(text, args[0], args[1]), "replace")
    elif name == "join" and args:
        items = list(args[0])
        _at_most(sum(len(str(i)) for i in items) + len(text) * len(items), "join")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(str(v)) for v in args[0].values() if v is not None), default=1)
        _at_most(len(text) * longest, "translate")


def _replaced_length(text: Any, old: Any, new: Any) -> int:
    text, old, new = str(text), str(old), str(new)
    count = len(text) + 1 if old == "" else text.count(old)
    return len(text) + count * max(0, len(new) - len(old))


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)

    @wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _charge()
        if check is not None:
            values = [a for a in args if not _is_jinja_internal(a)]
            check(*values, **kwargs)
        return _checked(function(*args, **kwargs))

    return bounded


def _is_jinja_internal(value: Any) -> bool:
    # pass_environment / pass_eval_context / pass_context filters receive these first.
    return isinstance(value, Environment | EvalContext | Context)


def _check_center(value: Any = "", width: Any = 80, *_: Any, **__: Any) -> None:
    if _is_int(width):
        _at_most(width, f"center({width})")


def _check_indent(value: Any = "", width: Any = 4, *_: Any, **__: Any) -> None:
    lines = str(value).count("\n") + 1
    per_line = len(width) if isinstance(width, str) else width if _is_int(width) else 0
    _at_most(len(str(value)) + lines * per_line, "indent")


def _check_wordwrap(value: Any = "", width: Any = 79, *args: Any, **kwargs: Any) -> None:
    wrap = kwargs.get("wrapstring") or (args[1] if len(args) > 1 else None) or "\n"
    text = str(value)
    pieces = len(text) // max(width if _is_int(width) else 1, 1) + 1
    _at_most(len(text) + pieces * len(str(wrap)), "wordwrap")


def _check_count(name: str) -> Callable[..., None]:
    def check(value: Any = None, count: Any = 1, *_: Any, **__: Any) -> None:
        if _is_int(count):
            _at_most(count, f"{name}({count})")

    return check


def _check_format_filter(value: Any = "", *_: Any, **__: Any) -> None:
    _check_printf(str(value))


def _check_replace(value: Any = "", old: Any = "", new: Any = "", *_: Any, **__: Any) -> None:
    _at_most(_replaced_length(value, old, new), "replace")


def _check_join(value: Any = (), d: Any = "", *_: Any, **__: Any) -> None:
    if isinstance(value, Iterable) and not isinstance(value, str):
        items = list(value)
        _at_most(sum(len(str(i)) for i in items) + len(str(d)) * len(items), "join")


def _check_tojson(value: Any = None, indent: Any = None, *_: Any, **__: Any) -> None:
    if _is_int(indent) and indent > MAX_JSON_INDENT:
        raise TemplateLimitError(f"tojson indents by at most {MAX_JSON_INDENT} (the limit)")


def _check_sum(value: Any = (), *args: Any, **kwargs: Any) -> None:
    start = kwargs.get("start", args[1] if len(args) > 1 else 0)
    if _length(start) is not None and isinstance(value, Iterable):
        _at_most(sum(_length(v) or 0 for v in value) + (_length(start) or 0), "sum")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "batch": _check_count("batch"),
    "slice": _check_count("slice"),
    "format": _check_format_filter,
    "replace": _check_replace,
    "join": _check_join,
    "tojson": _check_tojson,
    "sum": _check_sum,
}


# ----------------------------------------------------------------------------- environment


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox (no list.append in a message) with every amplifier bounded."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.globals.clear()  # range, lipsum, dict, cycler, joiner, namespace: none needed
        for name in NONDETERMINISTIC:
            self.filters.pop(name, None)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _charge()
        _check_binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # A macro call costs about four loop iterations (measured: 18 us against 4 us).
        _charge(4 if isinstance(__obj, Macro) else 1)
        _check_str_method(__obj, args)
        return _checked(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        pattern = str(value.__self__)

        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_format(pattern)
            result: str = _checked(wrapped(*args, **kwargs))
            return result

        return bounded

    def bounded_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Every for loop iterates through this: each item is a step of the budget."""
        for item in iterable:
            _charge()
            yield item

    def bounded_concat(self, *parts: Any) -> str:
        """`a ~ b ~ c`, checked before the pieces are joined."""
        texts = [str(p) for p in parts]
        _at_most(sum(len(t) for t in texts), "joining with ~")
        return "".join(texts)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        _Bounded(name, filename).visit(source)
        generated: str = super()._generate(source, name, filename, defer_init)
        return generated


class _Bounded(NodeTransformer):
    """Rewrites a parsed template so that every loop iterates through bounded_loop and
    every `~` joins through bounded_concat (neither is an operator the sandbox intercepts)."""

    def __init__(self, name: str | None, filename: str | None) -> None:
        self.name = name
        self.filename = filename

    def visit_For(self, node: nodes.For) -> nodes.Node:  # Jinja's visitor names
        if node.recursive:
            raise TemplateSyntaxError(_RECURSIVE_LOOP, node.lineno, self.name, self.filename)
        self.generic_visit(node)  # in place: a For is replaced by nothing
        node.iter = _call_environment("bounded_loop", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call_environment("bounded_concat", node.nodes, node.lineno)


def _call_environment(method: str, arguments: list[Any], lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(method), list(arguments), [], None, None)
    call.set_lineno(lineno)
    return call


_RECURSIVE_LOOP = "loops cannot be recursive in a message template"
_ENVIRONMENT = _BoundedEnvironment()


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _ENVIRONMENT.from_string(source)


# ----------------------------------------------------------------------------- render


def render_template(source: str, context: dict[str, Any]) -> str:
    """Render; raise TemplateError, and only that, when it cannot be rendered."""
    return render_counted(source, context)[0]


def is_plain(source: str) -> bool:
    """Plain text, the common case: it renders as itself whatever the context (so a
    caller need not build one)."""
    return "{" not in source and len(source) <= MAX_MESSAGE_CHARS


@lru_cache(maxsize=4096)
def names_read(source: str) -> frozenset[str] | None:
    """The names of the context a template reads (Jinja's undeclared variables: a
    template can reach no other), so that a caller may build only those; None when that
    cannot be told (a template over the limit or that does not parse: rendering it says
    why)."""
    if is_plain(source):
        return frozenset()
    if len(source) > MAX_TEMPLATE_CHARS:
        return None
    try:
        return frozenset(meta.find_undeclared_variables(_ENVIRONMENT.parse(source)))
    except Exception:
        return None


def render_counted(source: str, context: dict[str, Any]) -> tuple[str, int]:
    """Render, and say how many steps of the budget it took (loop items, calls, filters,
    intercepted operators); raise TemplateError, and only that."""
    if is_plain(source):
        return source, 0  # no Jinja at all
    simple = _simple_render(source, context)
    if simple is not None:
        return simple, 0
    try:
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateLimitError(_too_long(source))
        # Compiled (once, cached) outside the budget: Jinja folds constants then, and a
        # render must count the same steps the first time as every other time.
        template = _compile(source)
        budget = _Budget()
        token = _BUDGET.set(budget)
        try:
            return _render(template, context), budget.steps
        finally:
            _BUDGET.reset(token)
    except Exception as e:
        raise TemplateError(_readable(e)) from e


# A template that is text and `{{ name.key.key }}` only (most messages and task titles):
# its pieces, each a text or a path of dict keys; rendered by looking the keys up as
# Jinja's sandbox would, without Jinja (a render took a tenth of a simulation).
Simple = tuple[str | tuple[str, ...], ...]


@lru_cache(maxsize=4096)
def _simple_plan(source: str) -> Simple | None:
    """The pieces of a simple template, or None when it is anything more."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return None
    try:
        tree = _ENVIRONMENT.parse(source)
    except Exception:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    pieces: list[str | tuple[str, ...]] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
            continue
        path: list[str] = []
        while isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        if not isinstance(node, nodes.Name) or node.ctx != "load" or not path:
            return None
        pieces.append((node.name, *reversed(path)))
    return tuple(pieces)


def _simple_render(source: str, context: dict[str, Any]) -> str | None:
    """What Jinja renders for a simple template, or None to let Jinja render it: a key
    missing, a value not a dict where a key is read, a key that names a dict method
    (the sandbox gives the method), a text over the limit (Jinja says why)."""
    plan = _simple_plan(source)
    if plan is None:
        return None
    texts = []
    for piece in plan:
        if piece.__class__ is str:
            texts.append(piece)
            continue
        value: Any = context
        for key in piece:
            if value.__class__ is not dict or key not in value or hasattr(dict, key):
                return None
            value = value[key]
        try:
            texts.append(str(value))
        except Exception:  # (an int of too many digits): as Jinja fails, not here
            return None
    text = "".join(texts)
    return text if len(text) <= MAX_MESSAGE_CHARS else None


def static_steps(source: str) -> int:
    """The steps check_template counts for a template (loops over data counted once)."""
    return _static_steps(_ENVIRONMENT.parse(source), 1)[0]


def _render(template: Any, context: dict[str, Any]) -> str:
    pieces: list[str] = []
    size = 0
    for piece in template.generate(context):
        size += len(piece)
        if size > MAX_MESSAGE_CHARS:
            raise TemplateLimitError(
                f"the rendered text is over {MAX_MESSAGE_CHARS:,} characters (the limit, "
                "MAX_MESSAGE_CHARS)"
            )
        pieces.append(piece)
    return "".join(pieces)


_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (ZeroDivisionError, "division by zero"),
    (OverflowError, "a number too large"),
    (RecursionError, "nested too deeply"),
    (MemoryError, "out of memory"),
    (TypeError, "a value of the wrong type"),
    (ValueError, "a value that does not fit"),
    (LookupError, "a missing value"),
)


def _readable(error: BaseException) -> str:
    """What went wrong, at which line of the template, in words for an operator."""
    detail = str(error).split("\n")[0].strip()
    if isinstance(error, TemplateError | UndefinedError):
        text = detail or type(error).__name__
    else:
        reason = next((r for kind, r in _REASONS if isinstance(error, kind)), None)
        if reason is None:
            reason = type(error).__name__
        text = f"{reason}: {detail}" if detail and detail != reason else reason
    line = getattr(error, "lineno", None) or _template_line(error)
    return f"{text} (line {line})" if line else text


def _template_line(error: BaseException) -> int | None:
    """Jinja rewrites tracebacks so that frames of the template carry its line numbers."""
    line = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "<template>":
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _too_long(source: str) -> str:
    return (
        f"template is {len(source):,} characters long; a template holds at most "
        f"{MAX_TEMPLATE_CHARS:,} (the limit)"
    )


# ----------------------------------------------------------------------------- check


def check_template(
    source: str, *, with_event: bool = True, audience: Audience = Audience.CUSTOMER
) -> str | None:
    """A message saying why the template cannot render, or None."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return _too_long(source)
    problem = _check_nesting(source)
    if problem:
        return problem
    try:
        tree = _ENVIRONMENT.parse(source)
    except TemplateError as e:
        return f"template does not parse: {e}"
    except RecursionError:
        return f"template nests deeper than {MAX_TEMPLATE_NESTING} levels (the limit)"
    names = functools.partial(_check_names, audience=audience)
    for check in (_check_features, names, _check_loops, _check_constants):
        found = check(tree, with_event)
        if found:
            return _at_line(found, source)
    return None


def _at_line(problem: tuple[str, int], source: str) -> str:
    message, line = problem
    return f"{message} (line {line} of the template)" if "\n" in source.strip() else message


def _check_nesting(source: str) -> str | None:
    """Brackets and blocks inside one another, counted on Jinja's tokens (its lexer does
    not recurse; its parser does, once per level)."""
    depth = deepest = 0
    try:
        tokens = [t for t in _ENVIRONMENT.lex(source) if t[1] != "whitespace"]
    except TemplateError:
        return None  # the parser says what is wrong
    for index, (_, kind, value) in enumerate(tokens):
        if kind == "operator" and value in "([{":
            depth += 1
        elif kind == "operator" and value in ")]}":
            depth -= 1
        elif kind == "name" and index > 0 and tokens[index - 1][1] == "block_begin":
            if value in _BLOCKS or (value == "set" and _is_block_set(tokens, index)):
                depth += 1
            elif value.startswith("end"):
                depth -= 1
        deepest = max(deepest, depth)
    if deepest > MAX_TEMPLATE_NESTING:
        return f"template nests deeper than {MAX_TEMPLATE_NESTING} levels (the limit)"
    return None


def _is_block_set(tokens: list[tuple[int, str, str]], index: int) -> bool:
    for _, kind, value in tokens[index + 1 :]:
        if kind == "block_end":
            return True
        if kind == "operator" and value == "=":
            return False
    return True


def _check_features(tree: nodes.Template, _: bool) -> tuple[str, int] | None:
    for name in tree.find_all(nodes.Name):
        if NONDETERMINISTIC.get(name.name) == "function" and name.ctx == "load":
            return _nondeterministic(name.name, "function"), name.lineno
    for used in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(used, nodes.Filter | nodes.Test)
        if used.name in NONDETERMINISTIC:
            return _nondeterministic(used.name, "filter"), used.lineno
        filter_ = isinstance(used, nodes.Filter)
        known = _ENVIRONMENT.filters if filter_ else _ENVIRONMENT.tests
        if used.name not in known:
            kind = "filter" if filter_ else "test"
            return f"unknown {kind} '{used.name}'{did_you_mean(used.name, known)}", used.lineno
    for other in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return "a message template cannot include, import or extend another", other.lineno
    return None


def _nondeterministic(name: str, kind: str) -> str:
    return (
        f"{kind} '{name}' is not allowed: a template must render the same text every time "
        "(journeys are replayed from their history), so nothing random or read from the clock"
    )


def _check_names(
    tree: nodes.Template, with_event: bool, *, audience: Audience
) -> tuple[str, int] | None:
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    roots = template_roots(audience)
    roots = roots if with_event else roots - {"event"}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in roots and name.name not in assigned:
            if name.name in SUBJECT_ROOT.values():
                own = SUBJECT_ROOT[audience]
                message = (
                    f"template variable '{name.name}' cannot exist in a playbook with "
                    f"audience {audience.value}: it reads '{own}'"
                )
            else:
                hint = did_you_mean(name.name, roots)
                message = f"template variable '{name.name}' cannot exist{hint}"
            return message, name.lineno
    for access in tree.find_all(nodes.Getattr):
        target = access.node
        if isinstance(target, nodes.Name) and target.name in ROOTS and target.name in roots:
            fields = ROOTS[target.name]
            if access.attr not in fields:
                suggestion = did_you_mean(access.attr, fields)
                message = (
                    f"template variable '{target.name}.{access.attr}' cannot exist{suggestion}"
                )
                return message, access.lineno
        if (
            isinstance(target, nodes.Getattr)
            and target.attr == "orders"
            and access.attr not in ORDERS_FIELDS
        ):
            suggestion = did_you_mean(access.attr, ORDERS_FIELDS)
            message = f"template variable 'customer.orders.{access.attr}' cannot exist{suggestion}"
            return message, access.lineno
    return None


def _check_loops(tree: nodes.Template, _: bool) -> tuple[str, int] | None:
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            return _RECURSIVE_LOOP, loop.lineno
    deepest = _deepest_loop(tree, 0)
    if deepest is not None:
        depth, line = deepest
        return (
            f"template nests {depth} loops inside one another; at most "
            f"{MAX_TEMPLATE_LOOP_NESTING} (the limit)",
            line,
        )
    steps, runs = _static_steps(tree, 1)
    if steps > MAX_TEMPLATE_STEPS:
        first = next(tree.find_all(nodes.For), tree)
        return (
            f"loops would take {steps:,} steps ({runs:,} runs); a template takes at most "
            f"{MAX_TEMPLATE_STEPS:,} (the limit)",
            first.lineno,
        )
    return None


def _deepest_loop(node: nodes.Node, depth: int) -> tuple[int, int] | None:
    for child in node.iter_child_nodes():
        inner = depth + 1 if isinstance(child, nodes.For) else depth
        if inner > MAX_TEMPLATE_LOOP_NESTING:
            return inner, child.lineno
        found = _deepest_loop(child, inner)
        if found:
            return found
    return None


_CHARGED = (nodes.Call, nodes.Filter, nodes.Concat, nodes.Mul, nodes.Pow, nodes.Mod, nodes.Add)


def _static_steps(node: nodes.Node, runs: int) -> tuple[int, int]:
    """The steps rendering `node` takes at least, counting loops over constants (`'x' * 99`)
    as often as they run (a loop over data counts once: the budget stops it when
    rendering), and how many loop items that is."""
    if isinstance(node, nodes.For):
        steps, _ = _static_steps(node.iter, runs)
        length = _static_length(node.iter)
        inner = runs * (length if length is not None else 1)
        items = inner
        steps += runs + inner  # entering the loop (a call to bounded_loop), then each item
        for part in [*node.body, *([node.test] if node.test is not None else [])]:
            part_steps, part_items = _static_steps(part, inner)
            steps, items = steps + part_steps, items + part_items
        for part in node.else_:
            steps += _static_steps(part, runs)[0]
        return steps, items
    steps = runs if isinstance(node, _CHARGED) else 0
    items = 0
    for child in node.iter_child_nodes():
        child_steps, child_items = _static_steps(child, runs)
        steps, items = steps + child_steps, items + child_items
    return steps, items


def _static_length(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.List | nodes.Tuple | nodes.Dict):
        return len(node.items)  # its items need not be constant to be counted
    try:
        value = _static_value(node)
    except (TemplateLimitError, _NotStatic):
        return None
    except Exception:
        return None
    return _length(value)


class _NotStatic(Exception):
    pass


def _static_value(node: nodes.Node) -> Any:
    """The value of an expression of constants, computed with the render's checks (so a
    limit shows when the template is checked); _NotStatic for anything else."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        return [_static_value(item) for item in node.items]
    if isinstance(node, nodes.BinExpr):
        left, right = _static_value(node.left), _static_value(node.right)
        _check_binop(node.operator, left, right)
        return _checked(_ENVIRONMENT.binop_table[node.operator](left, right))
    if isinstance(node, nodes.Concat):
        parts = [_static_value(part) for part in node.nodes]
        return _ENVIRONMENT.bounded_concat(*parts)
    if (
        isinstance(node, nodes.Filter)
        and node.node is not None
        and node.name in _ENVIRONMENT.filters
    ):
        try:
            value = _static_value(node.node)
        except _NotStatic:
            value = ""  # the arguments alone may be over a limit: center(100000000)
        arguments = [_static_value(argument) for argument in node.args]
        keywords = {str(k.key): _static_value(k.value) for k in node.kwargs}
        check = _FILTER_CHECKS.get(node.name)
        if check is not None:
            check(value, *arguments, **keywords)
        raise _NotStatic  # filters themselves are not run here: only their limits
    raise _NotStatic


def _check_constants(tree: nodes.Template, _: bool) -> tuple[str, int] | None:
    for node in tree.find_all((nodes.BinExpr, nodes.Concat, nodes.Filter)):
        try:
            _static_value(node)
        except TemplateLimitError as e:
            return str(e), node.lineno
        except Exception:  # not constant, or fails for another reason at run time
            continue
    return None


__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_TEMPLATE_CHARS",
    "TemplateError",
    "TemplateLimitError",
    "check_template",
    "render_counted",
    "render_template",
    "static_steps",
]
