"""Parse YAML keeping where each key and value stands, so errors can name line and column."""

from __future__ import annotations

from typing import Any

import yaml

from sopflow.language.diagnostics import KeyPath

Position = tuple[int, int]  # 1-based line and column


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
    """Parse one YAML document; raise yaml.YAMLError (with its mark) when it is not YAML."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    data = yaml.safe_load(text)
    return data, PositionIndex(root)
