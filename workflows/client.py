"""The client side of the customer workflow: connecting, signal-with-start, the live view.

Everything that calls Temporal on a customer's behalf (the API, the CLI, the tests) goes
through these functions, next to the workflow's contracts they depend on.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from sopflow.core.deployment import Deployment
from sopflow.core.state import CustomerEvent
from sopflow.errors import SopflowError
from sopflow.settings import Settings
from workflows.contracts import (
    DESCRIBE_QUERY,
    EVENT_SIGNAL,
    LIFECYCLE_SEARCH_ATTRIBUTE,
    STAGES_SEARCH_ATTRIBUTE,
    TAGS_SEARCH_ATTRIBUTE,
    TIER_SEARCH_ATTRIBUTE,
    WORKFLOW_NAME,
    CustomerView,
    CustomerWorkflowInput,
    EventSignal,
    WorkflowOptions,
    subject_workflow_id,
)
from workflows.data_converter import DATA_CONVERTER


class TemporalUnavailable(SopflowError):
    """Temporal did not accept or answer a call; the caller may retry."""


class CustomerNotFound(SopflowError):
    """The customer has no workflow: no event was ever accepted for it."""


# One signal carries at most this much JSON of a customer's events (a batch of many
# events of one customer goes out as several signals, in order): far below Temporal's
# 2 MB payload limit, whatever a batch holds.
MAX_SIGNAL_BYTES = 256 * 1024


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
    """A client with sopflow's pydantic data converter (workflows/data_converter.py)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
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


async def send_events(
    client: Client, settings: Settings, events: list[CustomerEvent], deployment: Deployment
) -> str:
    """Send one customer's events, in order, starting its workflow on the first: one signal
    for as many as fit in MAX_SIGNAL_BYTES, the next signal for the rest."""
    workflow_id = subject_workflow_id(events[0].customer_id)
    for chunk in _chunks(events):
        signal = (
            EventSignal(event=chunk[0], deployment=deployment)
            if len(chunk) == 1
            else EventSignal(events=chunk, deployment=deployment)
        )
        workflow_id = await signal_with_start(client, settings, signal)
    return workflow_id


def _chunks(events: list[CustomerEvent]) -> list[list[CustomerEvent]]:
    chunks: list[list[CustomerEvent]] = [[]]
    size = 0
    for event in events:
        cost = len(event.model_dump_json())
        if chunks[-1] and size + cost > MAX_SIGNAL_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(event)
        size += cost
    return chunks


async def signal_customer(client: Client, signal: EventSignal) -> None:
    """Signal an existing customer's workflow; CustomerNotFound when it has none (a staff
    edit never creates a customer)."""
    customer_id = signal.all_events()[0].customer_id
    handle = client.get_workflow_handle(subject_workflow_id(customer_id))
    try:
        await handle.signal(EVENT_SIGNAL, signal)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise CustomerNotFound(f"no customer '{customer_id}'") from e
        raise TemporalUnavailable(f"Temporal did not accept the event: {e}") from e


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


@dataclass(frozen=True)
class CustomerSummary:
    """A customer as visibility lists it: its search attributes."""

    customer_id: str
    stages: list[str]
    tags: list[str]
    tier: str | None
    lifecycle: str | None


class InvalidPageToken(SopflowError):
    """Temporal could not use the page token it was handed."""


def customers_query(
    stages: list[str] | None, tag: str | None, tier: str | None, lifecycle: str | None
) -> str:
    """A visibility query for running customers in any of `stages` (`<playbook>:<stage>`),
    with a tag, a tier, a lifecycle stage. Values must be checked by the caller: they go
    into the query quoted, and must not contain quotes or backslashes."""
    clauses = [f"WorkflowType = '{WORKFLOW_NAME}'", "ExecutionStatus = 'Running'"]
    if stages is not None:
        listed = ", ".join(f"'{s}'" for s in stages)
        clauses.append(f"{STAGES_SEARCH_ATTRIBUTE} IN ({listed})")
    if tag:
        clauses.append(f"{TAGS_SEARCH_ATTRIBUTE} = '{tag}'")
    if tier:
        clauses.append(f"{TIER_SEARCH_ATTRIBUTE} = '{tier}'")
    if lifecycle:
        clauses.append(f"{LIFECYCLE_SEARCH_ATTRIBUTE} = '{lifecycle}'")
    return " AND ".join(clauses)


async def list_customers(
    client: Client, query: str, page_size: int, page_token: bytes | None
) -> tuple[list[CustomerSummary], bytes | None]:
    """One page of customers from visibility, and the token of the next page (or None)."""
    executions = client.list_workflows(query, page_size=page_size, next_page_token=page_token)
    try:
        await executions.fetch_next_page()
    except RPCError as e:
        if page_token is not None:
            raise InvalidPageToken("not a page token from this server") from e
        raise TemporalUnavailable(f"cannot list customers: {e}") from e
    customers = []
    for execution in executions.current_page or []:
        attributes = execution.typed_search_attributes
        customers.append(
            CustomerSummary(
                customer_id=execution.id.removeprefix("customer/"),
                stages=list(attributes.get(_STAGES) or []),
                tags=list(attributes.get(_TAGS) or []),
                tier=attributes.get(_TIER),
                lifecycle=attributes.get(_LIFECYCLE),
            )
        )
    return customers, executions.next_page_token or None


_STAGES = SearchAttributeKey.for_keyword_list(STAGES_SEARCH_ATTRIBUTE)
_TAGS = SearchAttributeKey.for_keyword_list(TAGS_SEARCH_ATTRIBUTE)
_TIER = SearchAttributeKey.for_keyword(TIER_SEARCH_ATTRIBUTE)
_LIFECYCLE = SearchAttributeKey.for_keyword(LIFECYCLE_SEARCH_ATTRIBUTE)
