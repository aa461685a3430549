"""The keys valid at one place of a document, for "did you mean" on an unknown key.

pydantic reports an unknown key with its location (`stages.x.on_enter.0.send.send.urgnet`:
the union member's tag comes after the list index). Walking the models' annotations along
that location finds the model the key was written in; only its keys are suggested, so a
typo inside a `send` is never told about `reentry`.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag

from sopflow.language.diagnostics import KeyPath


def keys_at(model: type[BaseModel], location: KeyPath) -> frozenset[str] | None:
    """The keys of the model found at `location` (a pydantic error location, union tags
    included), or None when the location does not lead to a model."""
    current: Any = model
    for part in location:
        current = _step(current, part)
        if current is None:
            return None
    found = _model_of(current)
    if found is None:
        return None
    return frozenset(info.alias or name for name, info in found.model_fields.items())


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for m in get_args(annotation) if m is not type(None)]
    return [annotation]


def _tag(member: Any) -> str | None:
    if get_origin(member) is Annotated:
        for extra in get_args(member)[1:]:
            if isinstance(extra, Tag):
                return str(extra.tag)
    return None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    members = [_unwrap(m) for m in _members(annotation)]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    return models[0] if len(models) == 1 else None


def _step(annotation: Any, part: str | int) -> Any:
    members = _members(annotation)
    # A union member named by its tag (`send` in `on_enter.0.send.send.text`).
    for member in members:
        if _tag(member) == part:
            return _unwrap(member)
    for member in members:
        member = _unwrap(member)
        origin = get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        elif origin in (list, tuple) and isinstance(part, int):
            return get_args(member)[0]
        elif origin is dict and isinstance(part, str):
            return get_args(member)[1]
    return None
