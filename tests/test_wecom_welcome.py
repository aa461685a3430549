"""The welcome message: the language's checks and the core's decision (the adapter that
sends it through send_welcome_msg is tested against the fake WeCom in test_wecom_sends)."""

from __future__ import annotations

from datetime import UTC, datetime

from sopflow.core.journey import apply_event
from sopflow.core.state import CustomerEvent, CustomerState
from sopflow.core.step import Catalog
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text

# 23:00 in Asia/Shanghai, inside the quiet hours.
NIGHT = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def playbook(send: str, enrol: str = "contact.added", first: str = "hello") -> str:
    return f"""\
apiVersion: sopflow/v1
kind: Playbook
metadata: {{name: hi}}
enrol: {{event: {enrol}}}
contact_policy: {{quiet_hours: "22:00-08:00"}}
stages:
  {first}:
    on_enter: [{{send: {send}}}]
    triggers: [{{after: 1d, goto: done}}]
  done: {{end: true}}
"""


def diagnostics(text: str) -> list[str]:
    documents, problems = load_text(text, "pb.yaml")
    return [d.message for d in compile_bundle(documents, problems).diagnostics]


def added(data: dict[str, object]) -> tuple[CustomerState, list]:
    documents, problems = load_text(
        playbook(
            '{channel: wecom.private, text: "欢迎!", welcome: true, '
            + str(data.pop("fallback", "welcome_fallback: send"))
            + "}"
        ),
        "pb.yaml",
    )
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    [plan] = bundle.plans.values()
    catalog = Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})
    event = CustomerEvent(
        customer_id="wm_1",
        type="contact.added",
        occurred_at=NIGHT,
        data={"attributes": {"owner": "li_lei"}, **data},
        idempotency_key="add",
    )
    result = apply_event(CustomerState(customer_id="wm_1"), event, catalog, NIGHT)
    return result.state, result.deliveries


def test_a_welcome_goes_out_at_once_with_its_code_even_in_the_quiet_hours() -> None:
    state, deliveries = added({"welcome_code": "WELCOME_1"})
    [delivery] = deliveries
    assert (delivery.welcome_code, delivery.sender, delivery.text) == (
        "WELCOME_1",
        "li_lei",
        "欢迎!",
    )
    assert [e.kind for e in state.timeline if e.kind in ("message", "deferred")] == ["message"]


def test_without_a_code_the_fallback_sends_it_as_an_ordinary_message() -> None:
    state, deliveries = added({})
    assert deliveries == []  # 23:00: an ordinary send waits for the quiet hours to end
    assert [e.kind for e in state.timeline if e.kind in ("message", "deferred")] == ["deferred"]


def test_without_a_code_the_skip_fallback_records_why() -> None:
    state, deliveries = added({"fallback": "welcome_fallback: skip"})
    assert deliveries == []
    [failed] = [e for e in state.timeline if e.kind == "send_failed"]
    assert failed.error is not None and failed.error.startswith("welcome skipped: no welcome code")


def test_a_welcome_on_another_channel_is_refused() -> None:
    assert diagnostics(playbook("{channel: log, text: hi, welcome: true}")) == [
        "welcome is a wecom.private message, not log"
    ]


def test_a_welcome_outside_the_first_stage_of_a_contact_added_playbook_is_warned() -> None:
    [message] = diagnostics(
        playbook("{channel: wecom.private, text: hi, welcome: true}", enrol="order.paid")
    )
    assert message.startswith("a welcome goes out only on entering the first stage")
