"""sopflow's data converter (workflows/data_converter.py): one payload converter per process,
payloads byte for byte those of temporalio's pydantic converter."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.contrib.pydantic import pydantic_data_converter

from sopflow.core.deployment import Deployment
from sopflow.core.state import CustomerEvent
from workflows.contracts import EventSignal
from workflows.data_converter import DATA_CONVERTER, SharedPydanticPayloadConverter


def signal() -> EventSignal:
    event = CustomerEvent(
        customer_id="wx_42",
        type="content.read",
        occurred_at=datetime(2026, 12, 3, 8, 30, tzinfo=UTC),
        data={"n": "第1篇", "score": 3},
        idempotency_key="k-1",
    )
    return EventSignal(event=event, deployment=Deployment(playbooks={"welcome": "v1"}))


def test_every_payload_converter_built_is_the_one_instance() -> None:
    # temporalio builds a converter per activation from the class and from the data
    # converter; both give the one instance, its type adapters already cached
    first = DATA_CONVERTER._new_payload_converter()
    assert SharedPydanticPayloadConverter() is SharedPydanticPayloadConverter()
    assert DATA_CONVERTER.payload_converter is not None
    assert first.to_payloads([signal()]) == DATA_CONVERTER._new_payload_converter().to_payloads(
        [signal()]
    )


async def test_payloads_are_those_of_temporalios_pydantic_converter() -> None:
    values = [signal(), {"a": [1, 2]}, "text", None]
    ours = await DATA_CONVERTER.encode(values)
    theirs = await pydantic_data_converter.encode(values)
    assert [p.SerializeToString(deterministic=True) for p in ours] == [
        p.SerializeToString(deterministic=True) for p in theirs
    ]
    back = await DATA_CONVERTER.decode(ours, [EventSignal, dict, str, type(None)])
    assert back[0] == signal()
