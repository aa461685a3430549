"""JSON Schemas generated from the models, for editors (playbooks) and API clients (events)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from api.models import EventIn
from sopflow.language.models import (
    AudienceDocument,
    ContentLibrary,
    Playbook,
    TagTaxonomy,
    Tiers,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def generated_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, as they must stand in schemas/."""
    documents: dict[str, type[BaseModel]] = {
        "playbook.schema.json": Playbook,
        "taxonomy.schema.json": TagTaxonomy,
        "tiers.schema.json": Tiers,
        "content.schema.json": ContentLibrary,
        "audience.schema.json": AudienceDocument,
    }
    schemas = {
        name: {"$schema": SCHEMA_DIALECT, **model.model_json_schema(by_alias=True)}
        for name, model in documents.items()
    }
    schemas["event.schema.json"] = {"$schema": SCHEMA_DIALECT, **EventIn.model_json_schema()}
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in generated_schemas().items():
        path = folder / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def drifted_schemas(folder: Path) -> list[str]:
    """Names of schema files that differ from what the models generate."""
    drifted = []
    for name, schema in generated_schemas().items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(schema):
            drifted.append(name)
    return drifted
