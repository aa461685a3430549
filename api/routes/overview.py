"""GET /v1/overview: every deployed playbook, customers per stage now, the week's figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep, SettingsDep
from api.models import ErrorResponse
from api.routes.playbooks import _deployed
from sopflow.settings import Settings
from sopflow.store.console_queries import Overview, overview
from sopflow.store.database import Database
from sopflow.store.plans import PlanStore

router = APIRouter(prefix="/v1", tags=["metrics"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 403)}


def week_start(now: datetime, zone: str) -> datetime:
    """Monday 00:00 of this week in `zone`: where "this week" counts from."""
    local = now.astimezone(ZoneInfo(zone))
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime(monday.year, monday.month, monday.day, tzinfo=ZoneInfo(zone))


async def build_overview(database: Database, plans: PlanStore, settings: Settings) -> Overview:
    """What GET /v1/overview answers and the console's overview shows."""
    since = week_start(datetime.now(UTC), settings.reporting_timezone)
    return await asyncio.to_thread(overview, database, _deployed(plans), since)


@router.get("/overview", response_model=Overview, responses=ERRORS)
async def get_overview(
    database: DatabaseDep, plans: PlanStoreDep, settings: SettingsDep, _: OperatorDep
) -> Overview:
    """Every deployed playbook: customers in each stage now (from the journey ledger), and
    since Monday 00:00 in the reporting time zone: goal conversions, messages delivered,
    suppressed by a cap, failed to render, not yet delivered, and WeCom sends awaiting
    their staff member's confirmation (until the WeCom adapter reports confirmations: a
    wecom.* message not yet in the delivery ledger)."""
    return await build_overview(database, plans, settings)
