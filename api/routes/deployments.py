"""Deployments: the current one (its ETag is what a deploy names in If-Match) and the
history of who deployed what, when."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.deps import OperatorDep, PlanStoreDep
from api.errors import ApiError
from api.models import MAX_DEPLOYMENT, ErrorResponse, deployment_etag
from sopflow.store.plans import DeploymentRecord

router = APIRouter(prefix="/v1", tags=["deployments"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404)
}


class DeploymentOut(BaseModel):
    id: int = Field(description="The deployment's number; its ETag is the number in quotes.")
    based_on: int | None = Field(description="The deployment the deployer had seen.")
    merged: bool = Field(description="Another deploy came between; both were kept.")
    deployed_at: datetime
    deployed_by: str = Field(description="The API key's name and id, or user@host.")
    source: str = Field(description="api, cli, dev, import or code")
    deployed: dict[str, str] = Field(description="Playbook -> version, as this deploy sent.")
    changed: list[str] = Field(description="Playbooks whose version this deploy changed.")
    profile_changed: bool
    playbooks: dict[str, str] = Field(description="Everything deployed from then on.")
    profile: str | None = Field(description="The profile rules' version from then on.")


def _out(record: DeploymentRecord) -> DeploymentOut:
    return DeploymentOut(
        id=record.id,
        based_on=record.based_on,
        merged=record.merged,
        deployed_at=record.deployed_at,
        deployed_by=record.deployed_by,
        source=record.source,
        deployed=record.deployed,
        changed=list(record.changed),
        profile_changed=record.profile_changed,
        playbooks=record.deployment.playbooks,
        profile=record.deployment.profile,
    )


@router.get("/deployments/current", response_model=DeploymentOut, responses=ERRORS)
async def current_deployment(
    plans: PlanStoreDep, _: OperatorDep, response: Response
) -> DeploymentOut:
    """The current deployment, read from the database now; send its ETag as If-Match
    when you deploy."""
    record = await asyncio.to_thread(plans.current)
    if record is None:
        raise ApiError(404, "no_deployment", 'nothing is deployed yet (deploy with If-Match: "0")')
    response.headers["ETag"] = deployment_etag(record.id)
    return _out(record)


@router.get("/deployments", response_model=list[DeploymentOut], responses=ERRORS)
async def list_deployments(
    plans: PlanStoreDep,
    _: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_DEPLOYMENT, description="Older than this number.")
    ] = None,
) -> list[DeploymentOut]:
    """Who deployed what, when: newest first, `limit` at a time."""
    return [_out(r) for r in await asyncio.to_thread(plans.history, limit, before)]
