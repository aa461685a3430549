"""Parse YAML keeping where each key and value stands, so errors can name line and column.

Parsing is bounded: operators' YAML reaches the API, so a text is refused, with its
position, when it is too long, nests too deeply, or expands through aliases beyond a small
budget (a 436-byte "billion laughs" document otherwise expands to gigabytes). Nothing
downstream (construction, validation, the position index) then walks more than
MAX_YAML_DEPTH levels or more nodes than the text holds plus MAX_ALIAS_NODES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from sopflow.language.diagnostics import KeyPath

Position = tuple[int, int]  # 1-based line and column

# The largest shipped deployment (every playbook of playbooks/) is about 33,000 characters;
# the pure-Python parser reads about 400,000 characters a second, and checking a playbook
# full of guards and templates at their limits takes about 25 us a character.
MAX_YAML_CHARS = 200_000
# Playbooks nest about ten levels; YAML's composer recurses once per level.
MAX_YAML_DEPTH = 64
# Aliases repeat content without writing it: each use counts the nodes it stands for.
MAX_ALIAS_NODES = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.YAMLError):
    """A text refused for its size or shape (not a syntax error), with where it happens."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping: YAML would silently keep the last value."""

    key: str
    line: int
    column: int
    first_line: int

    @property
    def message(self) -> str:
        return (
            f"duplicate key '{self.key}' (first written at line {self.first_line}): "
            "a key may appear once in a mapping"
        )


class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, Resolver):
    """PyYAML's SafeLoader (the same syntax, the same error messages), counting depth,
    alias expansion and repeated keys as it composes."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, once complete
        self._heights: dict[int, int] = {}  # id(node) -> levels it spans, once complete
        self._expanded = 0
        self._depth = 0
        self.duplicates: list[DuplicateKey] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(AliasEvent):
            event = self._next_event()
            node = super().compose_node(parent, index)
            assert node is not None  # an alias always names a node (or raises)
            self._count_alias(event, node)
            return node
        if self._depth >= MAX_YAML_DEPTH:
            mark = self._next_event().start_mark
            raise YamlLimitError(
                f"nested deeper than {MAX_YAML_DEPTH} levels (the limit)",
                mark.line + 1,
                mark.column + 1,
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        assert node is not None  # an event of a node was checked for above
        children = _children(node)
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
        self._heights[id(node)] = 1 + max((self._heights[id(c)] for c in children), default=0)
        if isinstance(node, yaml.MappingNode):
            self._find_duplicates(node)
        return node

    def _next_event(self) -> Any:  # events are untyped in the PyYAML stubs
        return self.peek_event()  # type: ignore[no-untyped-call]

    def _count_alias(self, event: Any, node: yaml.Node) -> None:
        line, column = event.start_mark.line + 1, event.start_mark.column + 1
        size = self._sizes.get(id(node))
        if size is None:
            raise YamlLimitError(
                f"alias '*{event.anchor}' refers to a node that contains it: "
                "recursive structures are not allowed",
                line,
                column,
            )
        if self._depth + self._heights[id(node)] > MAX_YAML_DEPTH:
            raise YamlLimitError(
                f"alias '*{event.anchor}' nests the document deeper than {MAX_YAML_DEPTH} "
                "levels (the limit)",
                line,
                column,
            )
        self._expanded += size
        if self._expanded > MAX_ALIAS_NODES:
            raise YamlLimitError(
                f"alias '*{event.anchor}' takes the nodes repeated through aliases past "
                f"{MAX_ALIAS_NODES} (the limit): write the content out, or repeat it less",
                line,
                column,
            )

    def _find_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            first = seen.setdefault((key_node.tag, key_node.value), key_node)
            if first is not key_node:
                self.duplicates.append(
                    DuplicateKey(
                        key_node.value,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        first.start_mark.line + 1,
                    )
                )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value YAML resolves but Python cannot build (a 13th month, an int of 5,000
        digits) becomes a YAML error at that value, not an exception from deep inside."""
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:
            # Python's own advice ("; use sys.set_int_max_str_digits()...") is not for operators.
            reason = str(e).split(";")[0]
            problem = f"cannot read this value: {reason}"
            raise ConstructorError(None, None, problem, node.start_mark) from e


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_documents(text: str) -> tuple[list[tuple[yaml.Node, Any]], list[DuplicateKey]]:
    """Every document's root node and data, and the keys written twice.

    Raises YamlLimitError for a text over the limits and yaml.YAMLError (with its mark)
    for one that is not YAML.
    """
    if len(text) > MAX_YAML_CHARS:
        line = text.count("\n", 0, MAX_YAML_CHARS) + 1
        raise YamlLimitError(
            f"the text is {len(text)} characters long, over the limit of {MAX_YAML_CHARS}: "
            "split it into several files",
            line,
            1,
        )
    loader = _Loader(text)
    try:
        documents: list[tuple[yaml.Node, Any]] = []
        while loader.check_node():
            root = loader.get_node()
            if root is not None:
                documents.append((root, loader.construct_document(root)))
        return documents, loader.duplicates
    finally:
        loader.dispose()


class PositionIndex:
    """Maps a key path of the parsed document to the position of its node."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._positions: dict[KeyPath, Position] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: KeyPath) -> None:
        self._positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
                child: KeyPath = (*path, key)
                self._walk(value_node, child)
                # A key's own position matters for "unknown key" errors: keep it apart.
                self._positions[(*child, "<key>")] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def locate(self, path: KeyPath, *, key: bool = False) -> Position:
        """Position of the deepest existing node along `path` (validator tags are skipped)."""
        found: KeyPath = ()
        for part in path:
            candidate = (*found, part)
            if candidate in self._positions:
                found = candidate
        if key and found and (*found, "<key>") in self._positions:
            return self._positions[(*found, "<key>")]
        return self._positions.get(found, (1, 1))

    def existing_path(self, path: KeyPath) -> KeyPath:
        """The part of `path` that names real nodes of the document."""
        found: KeyPath = ()
        for part in path:
            if (*found, part) in self._positions:
                found = (*found, part)
        return found


def load_yaml_with_positions(text: str) -> tuple[Any, PositionIndex]:
    """Parse one YAML document; raise yaml.YAMLError (with its mark) when it is not YAML
    or is over the limits (YamlLimitError)."""
    documents, _ = parse_documents(text)
    if len(documents) != 1:
        raise YamlLimitError(f"expected one YAML document, found {len(documents)}", 1, 1)
    root, data = documents[0]
    return data, PositionIndex(root)
