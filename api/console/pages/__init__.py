"""The console's pages, one module per page; `router` holds them all under /console."""

from __future__ import annotations

from fastapi import APIRouter

from api.console.pages import customers, money, overview, playbooks, session, staff

router = APIRouter(prefix="/console", include_in_schema=False)
for page in (session, overview, playbooks, money, customers, staff):
    router.include_router(page.router)
