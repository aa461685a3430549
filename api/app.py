"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from temporalio.client import Client

from api.console import mount_console
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.routes import (
    customer_lists,
    customers,
    deployments,
    events,
    groups,
    metrics,
    overview,
    playbooks,
    tasks,
    wecom,
)
from sopflow import __version__
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.plans import PlanStore
from workflows.client import connect


def create_app(
    settings: Settings | None = None,
    temporal: Client | None = None,
    database: Database | None = None,
) -> FastAPI:
    """Build the API; connects to Temporal and the read model unless handed them."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.temporal = temporal or await connect(settings)
        yield

    app = FastAPI(
        title="sopflow",
        version=__version__,
        description="Customer events in; durable journeys, messages and staff tasks out.",
        lifespan=lifespan,
        # Public by design (docs/decisions.md): they describe routes, never data.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    app.state.settings = settings
    app.state.database = database or Database.from_settings(settings)
    # Plans and deployments live in the read model: APIs on other hosts need nothing
    # shared but it and Temporal.
    app.state.plan_store = PlanStore(
        app.state.database, check_seconds=settings.deployment_check_seconds
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:  # off unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(events.router)
    app.include_router(customers.router)
    app.include_router(customer_lists.router)
    app.include_router(tasks.router)
    app.include_router(playbooks.router)
    app.include_router(deployments.router)
    app.include_router(metrics.router)
    app.include_router(overview.router)
    app.include_router(groups.router)
    app.include_router(wecom.router)
    mount_console(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app
