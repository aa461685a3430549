"""Dependencies as Annotated aliases: routes declare what they need by type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.coalesce import Coalescer, shared
from api.errors import ApiError
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Principal, Role, authenticate_all
from sopflow.store.plans import PlanStore


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def get_plan_store(request: Request) -> PlanStore:
    store: PlanStore = request.app.state.plan_store
    return store


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


# The getters are coroutines though they never wait: FastAPI runs a plain function
# dependency in a worker thread, and these four cost every request four thread hops
# (a third of an event request's time in the API, bench/latency.py).
SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
PlanStoreDep = Annotated[PlanStore, Depends(get_plan_store)]
DatabaseDep = Annotated[Database, Depends(get_database)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `sopflow keys create`.")


async def get_principal(
    database: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(
            401,
            "unauthenticated",
            "missing API key: send `Authorization: Bearer "
            "<key>` (create one with `sopflow keys create --role ...`)",
        )
    # Requests arriving together are authenticated in one query (most share a key).
    authenticator = shared(database, "keys", lambda db: Coalescer(partial(_authenticate, db)))
    principal = await authenticator(credentials.credentials)
    if principal is None:
        raise ApiError(401, "unauthenticated", "invalid or revoked API key")
    return principal


def _authenticate(
    database: Callable[[], Database], tokens: Sequence[str]
) -> list[Principal | None]:
    return authenticate_all(database(), tokens)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only these roles through (403 names what is needed)."""

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise ApiError(
                403,
                "forbidden",
                f"this API key has the role '{principal.role.value}'; this needs {allowed}",
            )
        return principal

    return check


IngestDep = Annotated[Principal, Depends(require(Role.INGEST, Role.OPERATOR))]
StaffDep = Annotated[Principal, Depends(require(Role.STAFF, Role.OPERATOR))]
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
