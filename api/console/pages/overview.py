"""Overview: every deployed playbook, customers per stage now, the week's figures."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.console.auth import UserDep
from api.console.rendering import render
from api.deps import DatabaseDep, PlanStoreDep, SettingsDep
from api.routes.overview import build_overview

router = APIRouter()


@router.get("/")
async def overview_page(
    request: Request,
    user: UserDep,
    database: DatabaseDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
) -> Response:
    if not user.is_operator:
        return RedirectResponse("/console/staff", status_code=303)
    data = await build_overview(database, plans, settings)
    return render(request, "overview.html", {"overview": data}, user=user)
