"""The README and the schemas are code too: what they show must work."""

import json
import re
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from cli.schemas import drifted_schemas, generated_schemas, render
from sopflow.core.journey import apply_due_timers, apply_event
from sopflow.core.state import CustomerEvent, CustomerState
from sopflow.core.step import Catalog
from sopflow.language import compile_paths, compile_playbook
from sopflow.language.compiler import yaml_files
from tests.conftest import REPO, T0

README = (REPO / "README.md").read_text(encoding="utf-8")
SCHEMAS = REPO / "schemas"
SHIPPED = yaml_files([REPO / "playbooks"])


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make dev", "make test"]
    assert README.index("make dev") < 200


def test_schemas_in_the_repo_match_the_models(tmp_path: Path) -> None:
    assert drifted_schemas(SCHEMAS) == []
    (tmp_path / "playbook.schema.json").write_text("{}")
    assert drifted_schemas(tmp_path) == [
        "playbook.schema.json",
        "taxonomy.schema.json",
        "tiers.schema.json",
        "content.schema.json",
        "audience.schema.json",
        "event.schema.json",
    ]
    assert (
        render(generated_schemas()["event.schema.json"])
        == (SCHEMAS / "event.schema.json").read_text()
    )


SCHEMA_OF_KIND = {
    "Playbook": "playbook.schema.json",
    "TagTaxonomy": "taxonomy.schema.json",
    "Tiers": "tiers.schema.json",
    "ContentLibrary": "content.schema.json",
    "Audience": "audience.schema.json",
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_documents_validate_against_their_schema_and_name_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    documents = list(yaml.safe_load_all(text))
    first = SCHEMA_OF_KIND[documents[0]["kind"]]
    assert text.startswith(f"# yaml-language-server: $schema=../schemas/{first}\n")
    for document in documents:
        jsonschema.validate(document, schema(SCHEMA_OF_KIND[document["kind"]]))


def test_shipped_playbooks_compile_without_errors_or_warnings() -> None:
    bundle = compile_paths([REPO / "playbooks"])
    assert [str(d) for d in bundle.diagnostics] == []
    assert set(bundle.plans) >= {
        "welcome",
        "auto_high_ticket",
        "one_to_one_five_stage",
        "snacks_high_frequency",
        "koc_nurturing",
        "koc_campaign",
    }
    assert bundle.profile is not None and bundle.profile.tiers is not None


def test_schema_rejects_what_the_compiler_rejects() -> None:
    document = yaml.safe_load((REPO / "playbooks/welcome.yaml").read_text(encoding="utf-8"))
    document["stages"]["icebreak"]["on_enter"][0]["send"]["channel"] = "sms"
    with pytest.raises(jsonschema.ValidationError, match="'sms' is not one of"):
        jsonschema.validate(document, schema("playbook.schema.json"))


def test_event_schema_accepts_its_example_and_refuses_a_naive_time() -> None:
    event_schema = schema("event.schema.json")
    [example] = event_schema["examples"]
    jsonschema.validate(example, event_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "contact.added"}, event_schema)


def test_readme_playbook_runs_as_described() -> None:
    [block] = [
        b
        for b in re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
        if b.startswith("# yaml-language-server")
    ]
    plan = compile_playbook(block, filename="README.md")
    plans = Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})
    added = CustomerEvent(
        customer_id="c", type="contact.added", occurred_at=T0, idempotency_key="a"
    )
    state = apply_event(CustomerState(customer_id="c"), added, plans, T0).state
    # No order in three days: the reminder goes out and the journey ends in gave_up.
    late = apply_due_timers(state, plans, T0 + timedelta(days=3))
    assert [d.text for d in late.deliveries] == ["首单券还有 24 小时过期哦。"]
    assert late.state.journeys["first_order"].stage == "gave_up"
    # An order within three days thanks the customer through the webhook instead.
    paid = CustomerEvent(customer_id="c", type="order.paid", occurred_at=T0, idempotency_key="p")
    ordered = apply_event(state, paid, plans, T0 + timedelta(days=1))
    assert [(d.channel, d.stage) for d in ordered.deliveries] == [("webhook", "thanks")]


def test_every_setting_is_in_a_settings_table() -> None:
    from sopflow.settings import Settings

    tables = (REPO / "docs" / "operations.md").read_text(encoding="utf-8") + (
        REPO / "docs" / "wecom.md"
    ).read_text(encoding="utf-8")
    missing = [
        f"SOPFLOW_{name.upper()}"
        for name in Settings.model_fields
        if f"`SOPFLOW_{name.upper()}`" not in tables
    ]
    assert missing == []
