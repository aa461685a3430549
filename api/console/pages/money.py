"""Funnel and money: the stage funnel of a playbook; new fans, cost and ROI per channel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.console.auth import ConsoleError, OperatorUser
from api.console.rendering import render
from api.console.views import recent_months
from api.deps import DatabaseDep, PlanStoreDep, SettingsDep
from api.routes.metrics import get_acquisition, get_funnel
from api.routes.playbooks import _deployed
from sopflow.language.models import NAME_PATTERN
from sopflow.reports.acquisition import Acquisition, cost_per_new_fan, roi

router = APIRouter()


@dataclass(frozen=True)
class ChannelMonth:
    """One acquisition channel in one month. A channel carries its traffic cost; the fixed
    costs are the month's, so they appear only in the month's total."""

    period: str
    channel_code: str
    new_fans: int
    cost_per_new_fan: float | None
    converted: int
    conversion_rate: float
    revenue: float
    roi: float | None


def channel_months(months: list[Acquisition]) -> list[ChannelMonth]:
    rows = []
    for month in months:
        for c in month.channels:
            rows.append(
                ChannelMonth(
                    period=month.period,
                    channel_code=c.channel_code,
                    new_fans=c.new_fans,
                    cost_per_new_fan=cost_per_new_fan(0.0, c.traffic_cost, c.new_fans),
                    converted=c.converted,
                    conversion_rate=c.conversion_rate,
                    revenue=c.revenue,
                    roi=roi(c.revenue, c.traffic_cost),
                )
            )
    return rows


@router.get("/funnel")
async def funnel_page(
    request: Request,
    user: OperatorUser,
    database: DatabaseDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    playbook: str | None = None,
    months: Annotated[int, Query(ge=1, le=24)] = 6,
) -> Response:
    deployed = _deployed(plans)
    names = [p.name for p in deployed]
    if playbook is not None and (not re.fullmatch(NAME_PATTERN, playbook)):
        raise ConsoleError(404, f"no playbook '{playbook}'")
    chosen = playbook or (names[0] if names else None)
    funnel = await get_funnel(chosen, database, plans, user.principal) if chosen else None
    periods = recent_months(datetime.now(UTC), settings.reporting_timezone, months)
    figures = [await get_acquisition(database, user.principal, period=p) for p in periods]
    top = max((s.entered for s in funnel.stages), default=0) if funnel else 0
    chart: dict[str, Any] = {
        "months": periods,
        "new_fans": [f.new_fans for f in figures],
        "cost_per_new_fan": [f.cost_per_new_fan for f in figures],
        "conversion_rate": [f.conversion_rate for f in figures],
        "roi": [f.roi for f in figures],
    }
    context = {
        "names": names,
        "chosen": chosen,
        "funnel": funnel,
        "top": top,
        "figures": figures,
        "channels": channel_months(figures),
        "chart": chart,
        "months": months,
    }
    return render(request, "money.html", context, user=user)
