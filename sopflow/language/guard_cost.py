"""An upper bound on the work a guard can do, read from its text before it ever runs.

The `cel` package has no evaluation budget (no cost limit, no timeout; its Rust interpreter
holds the GIL while it runs), and eight nested `[0,...,9].all(x, ...)` took 19 seconds. So a
guard is parsed here (a small CEL parser: the grammar of the CEL language definition) and
its cost bounded by abstract interpretation: each expression gets a *shape* (how many items
or string units a value can hold, and the shape of its items) and a *cost* (the steps its
evaluation can take), both polynomials in two numbers about the customer's data it reads:

- n, the largest collection (items) or string (units of 16 characters) in that data;
- v, the volume of that data (items, string units and scalars, all counted).

With no data (n = v = 1) the bound must stay within MAX_GUARD_COST at compile time; at run
time it is evaluated with the customer's real n and v before the guard runs. One step is
about what the interpreter does per node or per item: 50 ns on the machine this was
calibrated on (see docs/decisions.md), so MAX_GUARD_COST is about a millisecond.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sopflow.language.context import plain

MAX_GUARD_CHARS = 1_000
MAX_GUARD_NESTING = 16  # brackets, calls and `?:` inside one another
MAX_GUARD_COMPREHENSION_NESTING = 2  # all/exists/exists_one/map/filter inside one another
MAX_GUARD_LITERAL_ITEMS = 64  # items of one list literal, entries of one map literal
MAX_GUARD_STRING_CHARS = 256  # one string literal
MAX_GUARD_COST = 10_000  # steps, at about 50 ns each

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
CHARS_PER_UNIT = 16  # strings count in units of 16 characters: a step copies or compares that
# Measured: visiting an item of the customer's data (a comprehension over it, `in` on it)
# costs about 1 us, an item of the guard's own lists about 0.1 us.
DATA_ITEM_STEPS = 20


class GuardCostError(Exception):
    """A guard over one of the static limits; the message says which and why."""


# ----------------------------------------------------------------------------- polynomials

Path = tuple[str, ...]  # a context path a guard reads: ("customer", "tags")
Term = tuple[tuple[str, int], ...]  # variables and their powers, sorted: (("n:customer.tags", 2),)


@dataclass(frozen=True)
class Poly:
    """A polynomial with non-negative coefficients in the measures of the data read: for
    each path, `n:path` (its largest collection or string) and `v:path` (its volume)."""

    terms: Mapping[Term, float] = field(default_factory=dict)

    @staticmethod
    def const(value: float) -> Poly:
        return Poly({(): float(value)} if value else {})

    @staticmethod
    def variable(name: str) -> Poly:
        return Poly({((name, 1),): 1.0})

    def __add__(self, other: Poly) -> Poly:
        terms = dict(self.terms)
        for key, value in other.terms.items():
            terms[key] = terms.get(key, 0.0) + value
        return Poly(terms)

    def __mul__(self, other: Poly) -> Poly:
        terms: dict[Term, float] = {}
        for k1, a in self.terms.items():
            for k2, b in other.terms.items():
                powers = dict(k1)
                for name, power in k2:
                    powers[name] = powers.get(name, 0) + power
                key = tuple(sorted(powers.items()))
                terms[key] = terms.get(key, 0.0) + a * b
        return Poly(terms)

    def join(self, other: Poly) -> Poly:
        """An upper bound of both (term by term: the coefficients are non-negative)."""
        keys = set(self.terms) | set(other.terms)
        return Poly({k: max(self.terms.get(k, 0.0), other.terms.get(k, 0.0)) for k in keys})

    def at(self, values: Mapping[str, float] | None = None) -> float:
        """The value with the given measures; a measure not given is 1 (no data)."""
        values = values or {}
        return sum(
            c * math.prod(values.get(name, 1) ** power for name, power in term)
            for term, c in self.terms.items()
        )

    @property
    def reads_data(self) -> bool:
        return any(self.terms.keys() - {()})


ONE = Poly.const(1)


def _smaller(a: Poly, b: Poly) -> Poly:
    """min(a, b) is at most either: keep the one with fewer data terms, else the first
    (the left of `x in list`, `x == y`: usually the smaller value)."""
    return b if len(b.terms.keys() - {()}) < len(a.terms.keys() - {()}) else a


# ----------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    """How big a collection or string can be (`size`) and the shape of its items.

    `data` names the context paths a value was read from: it is at most as big as their
    largest collection, with items of the same kind, whatever the depth.
    """

    size: Poly
    items: Shape | None = None
    data: frozenset[Path] = frozenset()

    def item(self) -> Shape | None:
        return self if self.data else self.items


def _variable(kind: str, path: Path) -> str:
    return f"{kind}:{'.'.join(path)}"


def data_shape(paths: frozenset[Path]) -> Shape:
    size = Poly()
    for path in sorted(paths):
        size = size + Poly.variable(_variable("n", path))
    return Shape(size, None, paths)


def _size(shape: Shape | None) -> Poly:
    return ONE if shape is None else shape.size


def _total(shape: Shape | None) -> Poly:
    """All the units a deep comparison or copy of the value can touch."""
    if shape is None:
        return ONE
    if shape.data:
        volume = Poly()
        for path in sorted(shape.data):
            volume = volume + Poly.variable(_variable("v", path))
        return volume
    return ONE + shape.size * _total(shape.items)  # the value, and each item with its own


def _join(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None:
        return b
    if b is None:
        return a
    if a.data and b.data:
        return data_shape(a.data | b.data)
    if a.data or b.data:
        data, other = (a, b) if a.data else (b, a)
        return Shape(data.size.join(other.size), _join(data, other.items))
    return Shape(a.size.join(b.size), _join(a.items, b.items))


# ----------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Node:
    kind: str  # literal ident select index call list map struct unary binary cond comprehension
    text: str = ""  # identifier, field, function, operator or literal kind
    children: tuple[Node, ...] = ()
    length: int = 0  # characters of a string literal
    value: str = ""  # the text of a string or number literal (a `matches` pattern)
    variable: str = ""  # the bound name of a comprehension


@dataclass(frozen=True)
class _Token:
    kind: str  # ident number string op end
    text: str
    length: int = 0
    value: str = ""


_SPACE = re.compile(r"(?:\s+|//[^\n]*)+")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_START = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(\"\"\"|'''|\"|')")
_OPERATOR = re.compile(r"==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,\[\](){}]")


def tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        space = _SPACE.match(source, position)
        if space:
            position = space.end()
        if position >= len(source):
            tokens.append(_Token("end", ""))
            return tokens
        string = _STRING_START.match(source, position)
        if string:
            raw = "r" in source[position : string.start(1)].lower()
            end, value = _string_end(source, string.end(), string.group(1), raw)
            text = value if raw else _unescape(value)
            tokens.append(_Token("string", source[position:end], len(text), text))
            position = end
            continue
        for kind, pattern in (("number", _NUMBER), ("ident", _IDENT), ("op", _OPERATOR)):
            found = pattern.match(source, position)
            if found:
                tokens.append(_Token(kind, found.group()))
                position = found.end()
                break
        else:
            raise GuardCostError(f"unexpected character {source[position]!r}")


def _string_end(source: str, start: int, quote: str, raw: bool) -> tuple[int, str]:
    """Where a string literal ends, and its text (escapes kept as written)."""
    position = start
    while position < len(source):
        if source.startswith(quote, position):
            return position + len(quote), source[start:position]
        if source[position] == "\\" and not raw:
            position += 1
        position += 1
    raise GuardCostError("unterminated string")


_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-3][0-7]{2})|(.))", re.S
)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape(text: str) -> str:
    r"""A string literal's value, as CEL reads its escapes (a pattern's `\\d` is `\d`)."""

    def one(found: re.Match[str]) -> str:
        code = found.group(1) or found.group(2) or found.group(3)
        if code:
            return chr(min(int(code, 16), 0x10FFFF))
        if found.group(4):
            return chr(int(found.group(4), 8))
        return _SIMPLE_ESCAPES.get(found.group(5), found.group(5))

    return _ESCAPE.sub(one, text)


_RELATIONS = frozenset({"<", "<=", ">=", ">", "==", "!=", "in"})


class _Parser:
    """Recursive descent over CEL's grammar; nesting is counted, so recursion is bounded."""

    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.position = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.expression()
        if self.peek().kind != "end":
            raise GuardCostError(f"unexpected '{self.peek().text}'")
        return node

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self, text: str | None = None) -> _Token:
        token = self.tokens[self.position]
        if text is not None and token.text != text:
            raise GuardCostError(f"expected '{text}', found '{token.text}'")
        self.position += 1
        return token

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("op", "ident"):
            self.position += 1
            return True
        return False

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_GUARD_NESTING:
            raise GuardCostError(
                f"guard nests brackets, calls or conditions deeper than {MAX_GUARD_NESTING} "
                "levels (the limit)"
            )

    def expression(self) -> Node:
        condition = self.binary(0)
        if self.accept("?"):
            self.nested()
            yes = self.binary(0)
            self.take(":")
            no = self.expression()
            self.depth -= 1
            condition = Node("cond", "?:", (condition, yes, no))
        return condition

    _LEVELS: tuple[frozenset[str], ...] = (
        frozenset({"||"}),
        frozenset({"&&"}),
        _RELATIONS,
        frozenset({"+", "-"}),
        frozenset({"*", "/", "%"}),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek().text in self._LEVELS[level] and self.peek().kind in ("op", "ident"):
            operator = self.take().text
            node = Node("binary", operator, (node, self.binary(level + 1)))
        return node

    def unary(self) -> Node:
        operators = []
        while self.peek().kind == "op" and self.peek().text in ("!", "-"):
            operators.append(self.take().text)
        node = self.member()
        for operator in reversed(operators):
            node = Node("unary", operator, (node,))
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                name = self.take()
                if name.kind != "ident":
                    raise GuardCostError(f"expected a field name, found '{name.text}'")
                if self.peek().text == "(":
                    node = self.call(node, name.text)
                else:
                    node = Node("select", name.text, (node,))
            elif self.accept("["):
                self.nested()
                node = Node("index", "[]", (node, self.expression()))
                self.take("]")
                self.depth -= 1
            elif self.peek().text == "{" and _qualified_name(node):
                node = self.struct(node)
            else:
                return node

    def call(self, target: Node | None, name: str) -> Node:
        self.nested()
        self.take("(")
        arguments = self.items(")")
        self.depth -= 1
        if target is not None and name in MACROS:
            return _comprehension(target, name, arguments)
        return Node("call", name, ((target,) if target else ()) + tuple(arguments))

    def items(self, closing: str) -> list[Node]:
        found: list[Node] = []
        while not self.accept(closing):
            found.append(self.expression())
            if not self.accept(","):
                self.take(closing)
                break
        return found

    def struct(self, name: Node) -> Node:
        self.nested()
        self.take("{")
        fields: list[Node] = []
        while not self.accept("}"):
            self.take()  # the field name
            self.take(":")
            fields.append(self.expression())
            if not self.accept(","):
                self.take("}")
                break
        self.depth -= 1
        return Node("struct", "", (name, *fields))

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "string":
            return Node("literal", "string", length=token.length, value=token.value)
        if token.kind == "number":
            return Node("literal", "number", value=token.text)
        if token.kind == "ident":
            if token.text in ("true", "false", "null"):
                return Node("literal", token.text)
            if self.peek().text == "(":
                return self.call(None, token.text)
            return Node("ident", token.text)
        if token.text == ".":  # a leading dot: the root namespace
            return self.primary()
        self.nested()
        if token.text == "(":
            node = self.expression()
            self.take(")")
        elif token.text == "[":
            node = Node("list", "", tuple(self.items("]")))
        elif token.text == "{":
            node = Node("map", "", tuple(self.entries()))
        else:
            raise GuardCostError(f"unexpected '{token.text}'")
        self.depth -= 1
        return node

    def entries(self) -> Iterator[Node]:
        while not self.accept("}"):
            yield self.expression()
            self.take(":")
            yield self.expression()
            if not self.accept(","):
                self.take("}")
                return


def _qualified_name(node: Node) -> bool:
    if node.kind == "ident":
        return True
    return node.kind == "select" and _qualified_name(node.children[0])


def _comprehension(target: Node, name: str, arguments: list[Node]) -> Node:
    expected = (2, 3) if name == "map" else (2,)
    if len(arguments) not in expected or arguments[0].kind != "ident":
        raise GuardCostError(f"{name}() takes a name and an expression")
    return Node("comprehension", name, (target, *arguments[1:]), variable=arguments[0].text)


def parse(source: str) -> Node:
    """The syntax tree of a guard; GuardCostError when too deep or not understood."""
    return _Parser(source).parse()


# ----------------------------------------------------------------------------- limits


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def names(node: Node) -> set[str]:
    """Every identifier read, bound or free, as `cel.Program.variables()` lists them (a
    filter's expansion reads its variable: it appends the item it keeps)."""
    found = {n.text for n in walk(node) if n.kind == "ident"}
    return found | {
        n.variable for n in walk(node) if n.kind == "comprehension" and n.text == "filter"
    }


def functions(node: Node) -> set[str]:
    """Named functions (not operators or macros) the guard calls."""
    return {n.text for n in walk(node) if n.kind == "call" and n.text != "has"}  # a macro


def check_limits(node: Node) -> str | None:
    """The first static limit the guard is over, said for an operator, or None."""
    for current in walk(node):
        if current.kind == "literal" and current.length > MAX_GUARD_STRING_CHARS:
            return (
                f"guard holds a text of {current.length} characters; a guard's texts hold at "
                f"most {MAX_GUARD_STRING_CHARS} (the limit)"
            )
        if current.kind in ("list", "map"):
            count = len(current.children) // (2 if current.kind == "map" else 1)
            if count > MAX_GUARD_LITERAL_ITEMS:
                what = "list" if current.kind == "list" else "map"
                return (
                    f"guard writes a {what} of {count} items; a guard's lists and maps hold at "
                    f"most {MAX_GUARD_LITERAL_ITEMS} (the limit)"
                )
    depth = _comprehension_depth(node)
    if depth > MAX_GUARD_COMPREHENSION_NESTING:
        return (
            f"guard nests {depth} of all/exists/exists_one/map/filter inside one another; "
            f"at most {MAX_GUARD_COMPREHENSION_NESTING} (the limit): each level multiplies "
            "the work"
        )
    for current in walk(node):
        if current.kind == "call" and current.text == "matches":
            pattern = current.children[-1]
            if pattern.kind != "literal" or pattern.text != "string":
                return (
                    "matches() takes a pattern written in the guard (a text in quotes), "
                    "so that its cost is known before it runs"
                )
    return None


def _comprehension_depth(node: Node) -> int:
    """How many comprehensions run inside one another's bodies (a chain `.map().all()`
    runs one after the other: its ranges do not nest)."""
    if node.kind != "comprehension":
        return max((_comprehension_depth(child) for child in node.children), default=0)
    body = max((_comprehension_depth(child) for child in node.children[1:]), default=0)
    return max(_comprehension_depth(node.children[0]), 1 + body)


# ----------------------------------------------------------------------------- cost

_SCALAR_FUNCTIONS = frozenset(
    {"size", "int", "uint", "double", "bool", "timestamp", "duration", "type", "has"}
)


@dataclass(frozen=True)
class Cost:
    """The bound of a guard's work, and the context paths whose data it depends on."""

    steps: Poly
    paths: frozenset[Path]


def cost(node: Node) -> Cost:
    """An upper bound on the steps evaluating the guard can take."""
    paths: set[Path] = set()
    _, steps = _analyse(node, {}, paths)
    return Cost(steps, frozenset(paths))


Scope = dict[str, Shape | None]


def _analyse(node: Node, scope: Scope, paths: set[Path]) -> tuple[Shape | None, Poly]:
    kind = node.kind
    if kind == "literal":
        if node.text == "string":
            return Shape(Poly.const(max(1, math.ceil(node.length / CHARS_PER_UNIT)))), ONE
        return None, ONE
    path = _static_path(node, scope)
    if path is not None:  # customer.tags, event.data["k"], customer.attributes[expr]
        paths.add(path)
        work = Poly.const(len(path))
        for current in _path_nodes(node):
            if current.kind == "index" and not _literal_key(current):
                work = work + _analyse(current.children[1], scope, paths)[1]
        return data_shape(frozenset({path})), work
    if kind == "ident":  # a comprehension's variable
        return scope[node.text], ONE
    if kind == "comprehension":
        return _comprehension_cost(node, scope, paths)
    analysed = [_analyse(child, scope, paths) for child in node.children]
    shapes = [shape for shape, _ in analysed]
    work = ONE
    for _, child_cost in analysed:
        work = work + child_cost
    if kind in ("select", "index"):  # of a value computed in the guard
        shape = shapes[0]
        return (shape.item() if shape is not None else None), work
    if kind in ("list", "map", "struct"):
        count = len(node.children) // (2 if kind == "map" else 1)
        items: Shape | None = None
        for shape in shapes:
            items = _join(items, shape)
        return Shape(Poly.const(count), items), work + Poly.const(count)
    if kind == "unary":
        return None, work
    if kind == "cond":
        return _join(shapes[1], shapes[2]), work
    if kind == "binary":
        return _binary(node.text, shapes[0], shapes[1], work)
    return _call(node, shapes, work)


def _binary(
    operator: str, left: Shape | None, right: Shape | None, work: Poly
) -> tuple[Shape | None, Poly]:
    if operator == "+":
        if left is None and right is None:
            return None, work
        size = _size(left) + _size(right)
        items = _join(left.item() if left else None, right.item() if right else None)
        return Shape(size, items), work + size  # a concatenation copies both
    if operator in ("==", "!=", "<", "<=", ">", ">="):
        return None, work + _smaller(_total(left), _total(right))
    if operator == "in":
        visit = Poly.const(DATA_ITEM_STEPS if right is not None and right.data else 1)
        each = visit + _smaller(_total(left), _total(right.item() if right else None))
        return None, work + _size(right) * each
    return None, work  # && || - * / %: scalars


def _call(node: Node, shapes: list[Shape | None], work: Poly) -> tuple[Shape | None, Poly]:
    name = node.text
    if name == "matches":
        compile_steps, states = regex_weight(node.children[-1].value)
        subject = _size(shapes[0]) if len(shapes) == 2 else ONE
        per_unit = Poly.const(2 * CHARS_PER_UNIT + states * CHARS_PER_UNIT // 4)
        return None, work + Poly.const(compile_steps) + per_unit * subject
    if name == "contains":  # a linear search of the text
        return None, work + sum((_size(s) for s in shapes), Poly())
    if name in ("startsWith", "endsWith"):  # compares as much as the affix holds
        return None, work + _size(shapes[-1])
    if name == "dyn" and shapes:
        return shapes[0], work
    if name in ("string", "bytes") and shapes:
        text = Shape(Poly.const(2))  # a number or time as text: under 32 characters
        return _join(shapes[0], text), work + _total(shapes[0])
    if name in _SCALAR_FUNCTIONS or name.startswith("get"):  # getFullYear, getHours...
        return None, work + sum((_size(s) for s in shapes), Poly())
    # A function CEL does not know fails when run; count its arguments' whole size.
    return None, work + sum((_total(s) for s in shapes), Poly())


def _comprehension_cost(node: Node, scope: Scope, paths: set[Path]) -> tuple[Shape | None, Poly]:
    range_shape, work = _analyse(node.children[0], scope, paths)
    count = _size(range_shape)
    inner = {**scope, node.variable: range_shape.item() if range_shape else None}
    body = [_analyse(child, inner, paths) for child in node.children[1:]]
    each = Poly.const(DATA_ITEM_STEPS if range_shape is not None and range_shape.data else 2)
    for _, child_cost in body:
        each = each + child_cost
    work = work + ONE + count * each
    if node.text not in ("map", "filter"):
        return None, work
    items = body[-1][0] if node.text == "map" else (range_shape.item() if range_shape else None)
    # The interpreter builds the result by appending to a copy of the list so far: each
    # item is copied about count/2 times (measured: quadratic in the range).
    return Shape(count, items), work + count * count * (ONE + _total(items))


# ----------------------------------------------------------------------------- regexes

# Steps (of about 50 ns) to compile one item of a pattern, as measured: the interpreter
# compiles the pattern on every call, and Unicode classes compile to large automata.
_ESCAPE_STEPS = {"w": 8_000, "W": 8_000, "d": 600, "D": 600, "p": 400, "P": 400, "b": 300}
_ESCAPE_STEPS |= {"B": 300, "s": 150, "S": 150}
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def regex_weight(pattern: str) -> tuple[int, int]:
    """Steps to compile a `matches` pattern, and the states its matcher may track.

    Measured per call: 4 us to start, 70 ns per literal character, 25 us per \\d, 290 us
    per Unicode \\w; counted repetitions multiply what they repeat; matching costs about
    2 steps per character plus, when the automaton falls back to tracking states, a fifth
    of a step per state and character ((a{30}){30} on 1,000 characters: 10 ms).
    """
    steps, states, _ = _regex_sequence(pattern, 0, top=True)
    return 100 + steps, max(1, states)


def _regex_sequence(pattern: str, position: int, *, top: bool = False) -> tuple[int, int, int]:
    steps = states = 0
    last = (0, 0)
    while position < len(pattern):
        char = pattern[position]
        if char == ")" and not top:  # a stray one at the top is weighed as a character
            return steps, states, position + 1
        repeat = _REPEAT.match(pattern, position)
        if repeat:
            low, high = int(repeat.group(1)), repeat.group(2)
            extra = (int(high) if high else low + 1) - 1
            steps += last[0] * extra
            states += last[1] * extra
            last = (last[0] * (extra + 1), last[1] * (extra + 1))
            position = repeat.end()
            continue
        if char in "*+?|^$":
            position += 1
            continue
        if char == "(":
            item_steps, item_states, position = _regex_sequence(pattern, position + 1)
        elif char == "[":
            item_steps, position = _regex_class(pattern, position)
            item_states = 1
        elif char == "\\" and position + 1 < len(pattern):
            letter = pattern[position + 1]
            item_steps, item_states = _ESCAPE_STEPS.get(letter, 2), 1
            position += 2
            if letter in "pP" and pattern.startswith("{", position):
                position = pattern.find("}", position) + 1 or len(pattern)
        else:
            item_steps, item_states = (100 if char == "." else 2), 1
            position += 1
        steps += item_steps
        states += item_states
        last = (item_steps, item_states)
    return steps, states, position


def _regex_class(pattern: str, position: int) -> tuple[int, int]:
    end = position + 1
    while end < len(pattern) and (pattern[end] != "]" or end == position + 1):
        end += 2 if pattern[end] == "\\" else 1
    inside = pattern[position + 1 : end]
    steps = 150 if inside.startswith("^") else 5
    for letter, heavy in _ESCAPE_STEPS.items():
        if "\\" + letter in inside:
            steps = max(steps, heavy)
    return steps, end + 1


# ----------------------------------------------------------------------------- data


def _static_path(node: Node, scope: Scope) -> Path | None:
    """The context path a node reads when it is a root name followed by fields (and
    literal keys); a computed index reads the whole value before it."""
    if node.kind == "ident":
        return None if node.text in scope else (node.text,)
    if node.kind in ("select", "index"):
        base = _static_path(node.children[0], scope)
        if base is None:
            return None
        if node.kind == "select":
            return (*base, node.text)
        key = _literal_key(node)
        return (*base, key) if key else base
    return None


def _literal_key(node: Node) -> str:
    key = node.children[1]
    return key.value if key.kind == "literal" and key.text == "string" else ""


def _path_nodes(node: Node) -> Iterator[Node]:
    while node.kind in ("select", "index"):
        yield node
        node = node.children[0]


@lru_cache(maxsize=1024)
def _shortest_first(paths: frozenset[Path]) -> tuple[Path, ...]:
    """A guard's paths, shortest first (a guard is pruned for every evaluation)."""
    return tuple(sorted(paths, key=len))


def prune(context: Mapping[str, Any], paths: frozenset[Path]) -> dict[str, Any]:
    """Only the data at `paths`, in the same nesting: what a guard reading those paths
    sees exactly as in the whole context (a missing key is missing in both), at the cost
    of converting only that data for the interpreter."""
    pruned: dict[str, Any] = {}
    whole: set[Path] = set()
    for path in _shortest_first(paths):
        if whole and any(path[:length] in whole for length in range(1, len(path) + 1)):
            continue
        source: Any = context
        target = pruned
        for depth, part in enumerate(path):
            if not isinstance(source, Mapping) or part not in source:
                break
            source = source[part]
            if depth == len(path) - 1 or not isinstance(source, Mapping):
                target[part] = plain(source)
                whole.add(path[: depth + 1])
                break
            target = target.setdefault(part, {})
    return pruned


def measure(context: Mapping[str, Any], paths: frozenset[Path]) -> dict[str, float]:
    """For each path, `n:path` (its largest collection in items or string in units) and
    `v:path` (items, string units and scalars, all counted) in this context."""
    values: dict[str, float] = {}
    for path in paths:
        value: Any = context
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        largest, volume = 1, 0
        stack = [value]
        while stack:
            current = stack.pop()
            volume += 1
            if isinstance(current, str | bytes):
                units = math.ceil(len(current) / CHARS_PER_UNIT)
                largest = max(largest, units)
                volume += units
            elif isinstance(current, Mapping):
                largest = max(largest, len(current))
                stack.extend(current.keys())
                stack.extend(current.values())
            elif isinstance(current, list | tuple):
                largest = max(largest, len(current))
                stack.extend(current)
        values[_variable("n", path)] = largest
        values[_variable("v", path)] = volume
    return values
