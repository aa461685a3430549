"""Read YAML sources into validated documents, each remembering where its keys stand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from sopflow.language import models
from sopflow.language.diagnostics import Diagnostic, KeyPath, did_you_mean
from sopflow.language.foreign import foreign_note
from sopflow.language.salvage import Salvaged, salvage
from sopflow.language.schema_keys import keys_at
from sopflow.language.yaml_positions import PositionIndex, YamlLimitError, parse_documents


@dataclass
class SourceDocument:
    """One validated YAML document and where it came from."""

    model: (
        models.Playbook
        | models.TagTaxonomy
        | models.Tiers
        | models.ContentLibrary
        | models.AudienceDocument
    )
    file: str
    positions: PositionIndex

    def at(self, severity: str, message: str, path: KeyPath, *, key: bool = False) -> Diagnostic:
        line, column = self.positions.locate(path, key=key)
        existing = self.positions.existing_path(path)
        return Diagnostic(severity, message, self.file, line, column, existing)  # type: ignore[arg-type]


def load_text(
    text: str, filename: str, salvaged: list[Salvaged] | None = None
) -> tuple[list[SourceDocument], list[Diagnostic]]:
    """Every document of a (multi-document) YAML text, validated by its `kind`.

    Never raises for what the text holds: a text over the parsing limits (size, depth,
    aliases) or one that is not YAML gives one positioned diagnostic; a key written twice
    gives one each, and the documents are still validated so every mistake shows at once.
    Documents that are not sopflow's (simulate's events and customers) get a note; those
    that fail validation go, as far as they can be saved, to `salvaged` when it is given.
    """
    try:
        parsed, duplicates = parse_documents(text)
    except YamlLimitError as e:
        return [], [Diagnostic("error", e.message, filename, e.line, e.column)]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(e, "problem", None) or str(e)
        return [], [Diagnostic("error", f"invalid YAML: {problem}", filename, line, column)]
    documents: list[SourceDocument] = []
    problems = [Diagnostic("error", d.message, filename, d.line, d.column) for d in duplicates]
    for root, data in parsed:
        if data is None:
            continue
        positions = PositionIndex(root)
        line = root.start_mark.line + 1
        note = foreign_note(data, filename, line)
        if note is not None:
            problems.append(note)
            continue
        document, found = _validate(data, positions, filename)
        problems.extend(found)
        if document is not None:
            documents.append(SourceDocument(document, filename, positions))
        elif salvaged is not None and isinstance(data, dict):
            saved = salvage(data, filename, line, positions)
            if saved is not None:
                salvaged.append(saved)
    return documents, problems


def load_file(
    path: Path, salvaged: list[Salvaged] | None = None
) -> tuple[list[SourceDocument], list[Diagnostic]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], [Diagnostic("error", f"cannot read: {e}", str(path), 1, 1)]
    return load_text(text, str(path), salvaged)


def _validate(data: Any, positions: PositionIndex, filename: str) -> tuple[Any, list[Diagnostic]]:
    kinds = list(models.DOCUMENT_KINDS)
    if not isinstance(data, dict):
        message = "expected a mapping with apiVersion, kind, metadata, ..."
        return None, [Diagnostic("error", message, filename, 1, 1)]
    kind = data.get("kind", "Playbook")
    model_class = models.DOCUMENT_KINDS.get(str(kind))
    if model_class is None:
        line, column = positions.locate(("kind",))
        message = f"unknown kind '{kind}', expected one of {', '.join(kinds)}"
        message += did_you_mean(str(kind), kinds)
        return None, [Diagnostic("error", message, filename, line, column, ("kind",))]
    try:
        return model_class.model_validate(data), []
    except ValidationError as e:
        return None, validation_diagnostics(e, positions, filename, model_class)


def validation_diagnostics(
    error: ValidationError,
    positions: PositionIndex,
    filename: str,
    model: type[BaseModel] | None = None,
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for item in error.errors():
        loc: KeyPath = _without_union_tags(tuple(item["loc"]))
        path = positions.existing_path(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            line, column = positions.locate(loc, key=True)
            # Suggest only keys valid where it was written (any key if that is unknown).
            valid = keys_at(model, tuple(item["loc"][:-1])) if model else None
            message = f"unknown key '{key}'{did_you_mean(key, valid or _ALL_KEYS)}"
        elif kind == "union_tag_invalid":
            tag = str(item.get("ctx", {}).get("tag", "?"))
            expected = item.get("ctx", {}).get("expected_tags", "")
            line, column = positions.locate((*loc, tag), key=True)
            message = f"unknown kind '{tag}', expected one of {expected}"
            message += did_you_mean(tag, [t.strip(" '") for t in str(expected).split(",")])
        else:
            line, column = positions.locate(loc)
            message = _describe(item, loc)
        # A union of models reports one error per member; keep the first of each place.
        diagnostic = Diagnostic("error", message, filename, line, column, path)
        if not any(d.line == line and d.column == column for d in found):
            found.append(diagnostic)
    return found


def _without_union_tags(loc: KeyPath) -> KeyPath:
    """pydantic puts the union member's tag after a list index: (..., 0, 'send', 'send', 'text').

    The tag is no key of the document; dropped, the path points where the operator wrote.
    """
    cleaned: list[str | int] = []
    for index, part in enumerate(loc):
        after_index = index > 0 and isinstance(loc[index - 1], int)
        if after_index and part in _UNION_TAGS and index + 1 < len(loc):
            continue
        cleaned.append(part)
    return tuple(cleaned)


def _describe(item: Any, loc: KeyPath) -> str:
    kind = item["type"]
    named = [p for p in loc if isinstance(p, str)]
    field = named[-1] if named else "document"
    if kind == "missing":
        return f"missing required key '{field}'"
    if kind == "string_pattern_mismatch":
        return f"'{item['input']}' is not a valid {field}: expected {item['ctx']['pattern']}"
    if kind == "enum":
        return f"'{item['input']}' is not a valid {field}: expected {item['ctx']['expected']}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(item["ctx"].values()))
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        return f"{item['input']} is out of range for {field}: expected {words} {bound}"
    if kind == "literal_error":
        return f"'{item['input']}' is not a valid {field}: expected {item['ctx']['expected']}"
    message = str(item["msg"])
    # pydantic prefixes errors raised in our validators; the operator needs only our text.
    return message.removeprefix("Value error, ")


def _model_keys() -> frozenset[str]:
    keys: set[str] = set()
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            for name, info in value.model_fields.items():
                keys.add(info.alias or name)
    return frozenset(keys)


_ALL_KEYS = _model_keys()
# The first keys that route `- kind: ...` items to a member of the Action/Trigger unions.
_UNION_TAGS = frozenset(
    str(get_args(member)[1].tag)
    for union in (models.Action, models.Trigger)
    for member in get_args(get_args(union)[0])
)
