"""Staff scope: which customers a staff key may read and tag.

A staff member serves a customer who is theirs (the customer's `owner` attribute is their
staff id, as the `owner` assignee rule reads it) or for whom a task was ever assigned to
them (an escalation included): the inbox is how journeys hand customers to people.
Operators see everyone; ingest keys read no customer.
"""

from __future__ import annotations

import asyncio

from api.errors import ApiError
from sopflow.store.database import Database
from sopflow.store.keys import Principal, Role
from sopflow.store.tasks import has_served
from workflows.contracts import CustomerView

OWNER_ATTRIBUTE = "owner"


async def require_served(database: Database, principal: Principal, view: CustomerView) -> None:
    """403 unless the principal may see and tag this customer."""
    if principal.role != Role.STAFF:
        return
    staff_id = principal.staff_id or ""
    if str(view.profile.attributes.get(OWNER_ATTRIBUTE, "")) == staff_id:
        return
    if await asyncio.to_thread(has_served, database, staff_id, view.customer_id):
        return
    raise ApiError(
        403,
        "forbidden",
        f"staff '{staff_id}' does not serve customer '{view.customer_id}': a staff key "
        "reads and tags the customers it owns (attribute `owner`) or has had a task for",
    )
