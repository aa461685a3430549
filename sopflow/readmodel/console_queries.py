"""Read-model queries of the web console (and of GET /v1/overview): aggregates in SQL.

The console's routes hold no SQL; every number they show that the other API routes do not
already compute comes from here. All functions are synchronous (callers run them in a
thread) and read only.

Where a journey stands now is derived from the journey ledger: the last of its `enrolled`,
`stage_entered`, `migrated` and `journey_ended` rows. The worker writes the ledger at every
step, so it trails the workflows by one local activity, as the funnel does.
"""

from __future__ import annotations

from sopflow.readmodel.database import Database
from sopflow.readmodel.keys import Principal, Role
from sopflow.readmodel.tables import ApiKey


def principal_of(database: Database, key_id: str) -> Principal | None:
    """The principal of an unrevoked key, by its id (a console session names only the id)."""
    with database.session() as session:
        key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return Principal(key.key_id, key.name, Role(key.role), key.staff_id)
