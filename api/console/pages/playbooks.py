"""A playbook: its graph with live counts, versions and diffs, simulation; deploying YAML."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import Response

from api.console.auth import ConsoleError, OperatorUser, PostingOperator
from api.console.rendering import render
from api.console.views import (
    DEFAULT_EVENTS,
    daily_series,
    live_graph,
    parse_events_text,
    plan_diff,
    timeline_rows,
)
from api.deps import DatabaseDep, PlanStoreDep, SettingsDep
from api.errors import ApiError
from api.routes.metrics import get_funnel
from api.routes.playbooks import (
    SimulationRequest,
    _plan,
    deploy_playbooks,
    list_versions,
    simulate,
)
from sopflow.core.state import TimelineEntry
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.language.models import NAME_PATTERN
from sopflow.store.console_queries import stage_counts

router = APIRouter()
# A pasted or uploaded playbook is shown back with its diagnostics: keep it readable.
MAX_SOURCE_LINES = 5000


@router.get("/playbooks/{name}")
async def playbook_page(
    request: Request,
    name: str,
    user: OperatorUser,
    database: DatabaseDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
) -> Response:
    if not _valid_name(name):
        raise ConsoleError(404, f"no playbook '{name}'")
    plan = _plan(plans, name, None)
    funnel = await get_funnel(name, database, plans, user.principal)
    counts = (await asyncio.to_thread(stage_counts, database)).get(name, {})
    versions = await list_versions(name, plans, user.principal)
    saved: dict[str, datetime] = plans.stored_at([v.version for v in versions])
    versions.sort(key=lambda v: saved.get(v.version) or datetime.min.replace(tzinfo=UTC))
    zone = settings.reporting_timezone
    start = datetime.now(UTC).astimezone(ZoneInfo(zone)).replace(second=0, microsecond=0)
    context: dict[str, Any] = {
        "plan": plan,
        "graph": live_graph(plan, counts, funnel),
        "counts": counts,
        "funnel": funnel,
        "versions": versions,
        "saved": saved,
        "events_text": DEFAULT_EVENTS % (plan.enrol.event or "contact.added"),
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "days": 30,
    }
    return render(request, "playbook.html", context, user=user)


def _valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


@router.get("/playbooks/{name}/diff")
async def diff_page(
    request: Request,
    name: str,
    user: OperatorUser,
    plans: PlanStoreDep,
    old: str,
    new: str,
) -> Response:
    if not _valid_name(name):
        raise ConsoleError(404, f"no playbook '{name}'")
    before, after = _plan(plans, name, old), _plan(plans, name, new)
    lines = plan_diff(before, after)
    return render(
        request,
        "diff.html",
        {"plan": after, "old": before, "new": after, "lines": lines},
        user=user,
    )


@router.post("/playbooks/{name}/simulate")
async def simulate_page(
    request: Request,
    name: str,
    user: PostingOperator,
    plans: PlanStoreDep,
    settings: SettingsDep,
    events: Annotated[str, Form(max_length=100_000)] = "",
    start: Annotated[str, Form(max_length=40)] = "",
    days: Annotated[int, Form(ge=1, le=730)] = 30,
) -> Response:
    if not _valid_name(name):
        raise ConsoleError(404, f"no playbook '{name}'")
    zone = settings.reporting_timezone
    try:
        moment = datetime.fromisoformat(start) if start else datetime.now(UTC)
    except ValueError:
        return _simulation_error(request, user, f"start: '{start}' is not a date and time")
    if moment.tzinfo is None:  # the form's datetime-local is in the reporting zone
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    try:
        items = parse_events_text(events)
        timeline = await simulate(
            name, SimulationRequest(events=items, start=moment, days=days), plans, user.principal
        )
    except ValueError as e:
        return _simulation_error(request, user, str(e))
    except ApiError as e:
        if e.status != 422:
            raise
        return _simulation_error(request, user, e.message)
    entries = [TimelineEntry.model_validate(row) for row in timeline]
    context = {
        "rows": timeline_rows(entries, zone, moment),
        "chart": daily_series(entries, moment, days, zone),
        "start": moment,
        "days": days,
    }
    return render(request, "simulation.html", context, user=user)


def _simulation_error(request: Request, user: Any, message: str) -> Response:
    return render(request, "simulation.html", {"error": message}, user=user, status=422)


@router.get("/deploy")
async def deploy_form(request: Request, user: OperatorUser) -> Response:
    return render(request, "deploy.html", {"text": "", "diagnostics": [], "lines": []}, user=user)


@router.post("/deploy")
async def deploy(
    request: Request,
    user: PostingOperator,
    plans: PlanStoreDep,
    text: Annotated[str, Form(max_length=1_000_000)] = "",
    file: UploadFile | None = None,
) -> Response:
    filename = "pasted.yaml"
    if file is not None and file.filename:
        raw = await file.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConsoleError(422, f"{file.filename}: not UTF-8 text") from None
        filename = file.filename
    documents, problems = load_text(text, filename)
    bundle = compile_bundle(documents, problems)
    lines = text.splitlines()[:MAX_SOURCE_LINES]
    marks = {d.line for d in bundle.diagnostics}
    context: dict[str, Any] = {
        "text": text,
        "filename": filename,
        "diagnostics": bundle.diagnostics,
        "lines": [(i + 1, line, (i + 1) in marks) for i, line in enumerate(lines)],
    }
    if bundle.errors or not bundle.plans:
        if not bundle.errors:
            context["message"] = "the YAML holds no Playbook document"
        return render(request, "deploy.html", context, user=user, status=422)
    # Deploy through the API's own route: the same checks, the same atomic change.
    result = await deploy_playbooks(plans, user.principal, text, Response())
    context["deployed"] = result.deployed
    return render(request, "deploy.html", context, user=user, status=201)
