"""The client side of the customer workflow: connecting, signal-with-start, the live view.

Everything that calls Temporal on a customer's behalf (the API, the CLI, the tests) goes
through these functions, next to the workflow's contracts they depend on.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from sopflow.errors import SopflowError
from sopflow.settings import Settings
from workflows.contracts import (
    DESCRIBE_QUERY,
    EVENT_SIGNAL,
    WORKFLOW_NAME,
    CustomerView,
    CustomerWorkflowInput,
    EventSignal,
    WorkflowOptions,
    subject_workflow_id,
)


class TemporalUnavailable(SopflowError):
    """Temporal did not accept or answer a call; the caller may retry."""


def tls_config(settings: Settings) -> TLSConfig | bool:
    """mTLS when a client certificate is configured; plain TLS with an API key alone."""
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
            server_root_ca_cert=(
                settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None
            ),
        )
    return settings.temporal_api_key is not None


async def connect(settings: Settings) -> Client:
    """A client with sopflow's pydantic data converter."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls_config(settings),
        api_key=api_key,
    )


async def signal_with_start(client: Client, settings: Settings, signal: EventSignal) -> str:
    """Signal the subject's workflow (a customer's, a group's, a staff member's), starting
    it on the subject's first event."""
    customer_id = signal.all_events()[0].customer_id
    workflow_id = subject_workflow_id(customer_id)
    start_input = CustomerWorkflowInput(
        customer_id=customer_id,
        options=WorkflowOptions(publish_search_attributes=settings.publish_search_attributes),
    )
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            start_input,
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            start_signal=EVENT_SIGNAL,
            start_signal_args=[signal],
        )
    except RPCError as e:
        raise TemporalUnavailable(f"Temporal did not accept the event: {e}") from e
    return workflow_id


async def describe_customer(client: Client, customer_id: str) -> CustomerView | None:
    """The subject's live view from its workflow (a customer's, or a group's by
    `group/<chat_id>`), or None when it has none."""
    handle = client.get_workflow_handle(subject_workflow_id(customer_id))
    try:
        view: CustomerView = await handle.query(DESCRIBE_QUERY, result_type=CustomerView)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise TemporalUnavailable(f"cannot read the customer: {e}") from e
    return view
