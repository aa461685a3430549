"""Playbooks: deploy YAML, list, versions, Mermaid graph, simulate."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import OperatorDep, PlanStoreDep
from api.errors import ApiError
from api.models import MAX_DEPLOYMENT, ErrorDetail, ErrorResponse, deployment_etag
from sopflow.core import simulator
from sopflow.errors import SopflowError
from sopflow.language.compiler import Bundle, compile_bundle
from sopflow.language.graph import mermaid
from sopflow.language.loader import load_text
from sopflow.language.models import NAME_PATTERN
from sopflow.language.plan import Plan
from sopflow.store.plans import DeploymentConflict, PlanStore
from sopflow.store.segments import save_segments

router = APIRouter(prefix="/v1", tags=["playbooks"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422)
}
DEPLOY_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 409, 422)
}

Name = Annotated[str, Path(pattern=NAME_PATTERN)]


class Deployed(BaseModel):
    name: str
    version: str


class DeployResult(BaseModel):
    deployed: list[Deployed]
    warnings: list[str] = Field(description="`file:line:col: warning: message` lines.")
    audiences: list[str] = Field(
        default_factory=list, description="Audience documents of the body, saved by name."
    )
    deployment: int = Field(description="The new deployment's number (also its ETag).")
    based_on: int = Field(description="The deployment this deploy was based on.")
    merged: bool = Field(
        description="A deploy since `based_on` changed other playbooks; both are kept."
    )


class PlaybookSummary(BaseModel):
    name: str
    title: str | None
    version: str
    stages: list[str]


class VersionSummary(BaseModel):
    version: str
    deployed: bool
    stages: list[str]


class Graph(BaseModel):
    name: str
    version: str
    mermaid: str


class SimulationRequest(BaseModel):
    events: list[dict[str, Any]] = Field(
        default_factory=list, description="{at | after, type, data}, as for `sopflow simulate`."
    )
    start: AwareDatetime | None = None
    days: int = Field(default=30, ge=1, le=730)
    customer: dict[str, Any] = Field(
        default_factory=dict, description="id, timezone, attributes, tags"
    )


YAML_BODY = Body(media_type="application/yaml", description="One or more YAML documents.")


@router.post(
    "/playbooks",
    status_code=status.HTTP_201_CREATED,
    response_model=DeployResult,
    responses=DEPLOY_ERRORS,
)
async def deploy_playbooks(
    plans: PlanStoreDep,
    principal: OperatorDep,
    text: Annotated[str, YAML_BODY],
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            description='The deployment this deploy is based on, as its ETag ("7"), from '
            "GET /v1/deployments/current or a previous deploy."
        ),
    ] = None,
    base: Annotated[
        int | None,
        Query(ge=0, le=MAX_DEPLOYMENT, description="The same as If-Match, as a number."),
    ] = None,
) -> DeployResult:
    """Deploy playbooks (with any TagTaxonomy, Tiers or ContentLibrary they need in the same
    body). Errors answer 422 with every diagnostic; new journeys start on the new versions,
    journeys in flight keep theirs.

    Name the deployment you based the deploy on (If-Match or `base`): if another deploy
    came since, yours is merged onto it when the two changed different playbooks, and
    refused with 409 when both changed the same one. Without it, the deploy is based on
    the deployment current when it is written."""
    based_on = _base(if_match, base)
    # Parsing and checking take up to a few seconds for a body at the limits: never on the
    # event loop, which keeps answering every other request meanwhile.
    bundle = await asyncio.to_thread(compile_text, text)
    if bundle.errors:
        details = [
            ErrorDetail(
                field=f"{d.line}:{d.column} {'.'.join(map(str, d.path))}".strip(), message=d.message
            )
            for d in bundle.errors
        ]
        raise ApiError(422, "invalid_playbook", "; ".join(str(d) for d in bundle.errors), details)
    if not bundle.plans:
        raise ApiError.invalid(
            "body", "the body holds no Playbook document", code="invalid_playbook"
        )
    try:
        record = await asyncio.to_thread(
            functools.partial(
                plans.deploy_all,
                list(bundle.plans.values()),
                bundle.profile,
                bundle.profile is None,
                base=based_on,
                by=f"{principal.name} (key {principal.key_id})",
                source="api",
            )
        )
    except DeploymentConflict as e:
        raise ApiError(409, "deployment_conflict", str(e)) from e
    by = f"{principal.name} (key {principal.key_id})"
    await asyncio.to_thread(save_segments, plans.database, list(bundle.segments.values()), by)
    warnings = [str(d) for d in bundle.diagnostics if d.severity == "warning"]
    response.headers["ETag"] = deployment_etag(record.id)
    return DeployResult(
        deployed=[Deployed(name=p.name, version=p.version) for p in bundle.plans.values()],
        warnings=warnings,
        audiences=sorted(bundle.segments),
        deployment=record.id,
        based_on=record.based_on if record.based_on is not None else record.id - 1,
        merged=record.merged,
    )


def _base(if_match: str | None, base: int | None) -> int | None:
    """The deployment named by If-Match ("7", W/"7", 7; * is any) or `base`."""
    named = None
    if if_match is not None and if_match.strip() != "*":
        digits = if_match.strip().removeprefix("W/").strip('"')
        if not digits.isdigit() or len(digits) > 10 or int(digits) > MAX_DEPLOYMENT:
            raise ApiError(
                422,
                "invalid_request",
                f'If-Match: {if_match[:40]!r} is not a deployment ETag such as "7"',
            )
        named = int(digits)
    if named is not None and base is not None and named != base:
        raise ApiError(
            422, "invalid_request", f"If-Match names deployment {named} but base names {base}"
        )
    return named if named is not None else base


@router.get("/playbooks", response_model=list[PlaybookSummary], responses=ERRORS)
async def list_playbooks(plans: PlanStoreDep, _: OperatorDep) -> list[PlaybookSummary]:
    """The deployed playbooks and their current versions."""
    return [
        PlaybookSummary(name=p.name, title=p.title, version=p.version, stages=list(p.stages))
        for p in await asyncio.to_thread(_deployed, plans)
    ]


@router.get("/playbooks/{name}/versions", response_model=list[VersionSummary], responses=ERRORS)
async def list_versions(name: Name, plans: PlanStoreDep, _: OperatorDep) -> list[VersionSummary]:
    """Every version of a playbook ever deployed here."""
    current = (await plans.current_deployment()).playbooks.get(name)
    versions = await asyncio.to_thread(plans.versions_of, name)
    if not versions:
        raise ApiError(404, "playbook_not_found", f"no playbook '{name}'")
    return [
        VersionSummary(version=p.version, deployed=p.version == current, stages=list(p.stages))
        for p in versions
    ]


@router.get("/playbooks/{name}/graph", response_model=Graph, responses=ERRORS)
async def graph(
    name: Name, plans: PlanStoreDep, _: OperatorDep, version: str | None = None
) -> Graph:
    """A Mermaid stateDiagram-v2 of the deployed (or a given) version."""
    return await asyncio.to_thread(_graph, plans, name, version)


@router.post("/playbooks/{name}/simulate", response_model=list[dict[str, Any]], responses=ERRORS)
async def simulate(
    name: Name, request: SimulationRequest, plans: PlanStoreDep, _: OperatorDep
) -> list[dict[str, Any]]:
    """Run the deployed version on a virtual clock: the customer's timeline, as JSON."""
    return await asyncio.to_thread(_simulate, plans, name, request)


def compile_text(text: str) -> Bundle:
    """Parse and compile a request body (in a worker thread: see deploy_playbooks)."""
    documents, problems = load_text(text, "request")
    return compile_bundle(documents, problems)


def _graph(plans: PlanStore, name: str, version: str | None) -> Graph:
    plan = _plan(plans, name, version)
    return Graph(name=plan.name, version=plan.version, mermaid=mermaid(plan))


def _simulate(plans: PlanStore, name: str, request: SimulationRequest) -> list[dict[str, Any]]:
    plan = _plan(plans, name, None)
    start = request.start or datetime.now(UTC).replace(microsecond=0)
    deployed = {p.name: p for p in _deployed(plans)}
    profile_version = plans.deployment().profile
    profile = plans.load_profile(profile_version) if profile_version else None
    try:
        events = (
            simulator.parse_events(request.events, start)
            if request.events
            else simulator.default_events(plan, start)
        )
        customer = simulator.CustomerSpec(
            id=str(request.customer.get("id", "sim-customer")),
            timezone=request.customer.get("timezone"),
            attributes=dict(request.customer.get("attributes") or {}),
            tags=list(request.customer.get("tags") or []),
        )
        timeline = simulator.simulate(
            simulator.reachable_plans([plan], deployed),
            profile,
            events,
            start,
            request.days,
            customer,
        )
    except SopflowError as e:
        raise ApiError.invalid("body", str(e)) from e
    return simulator.timeline_json(timeline)


def _deployed(plans: PlanStore) -> list[Plan]:
    loaded = [plans.load(v) for v in plans.deployment().playbooks.values()]
    return sorted((p for p in loaded if p is not None), key=lambda p: p.name)


def _plan(plans: PlanStore, name: str, version: str | None) -> Plan:
    wanted = version or plans.deployment().playbooks.get(name)
    plan = plans.load(wanted) if wanted else None
    if plan is None or plan.name != name:
        raise ApiError(
            404,
            "playbook_not_found",
            f"no playbook '{name}'" + (f" at version {version}" if version else ""),
        )
    return plan
