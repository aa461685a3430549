"""Audiences (named segments of customers) and the enrolment batches that enrol them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.models import ErrorResponse
from sopflow.language.models import NAME_PATTERN
from sopflow.language.segments import SegmentPlan, check_segment
from sopflow.language.subjects import Audience
from sopflow.store.segments import list_segments, load_segment, preview_segment, save_segments
from workflows.enrolment_client import BatchExists, batch_progress, cancel_batch, start_batch
from workflows.enrolment_contracts import BatchProgress

router = APIRouter(prefix="/v1", tags=["audiences"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
BatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


class AudienceIn(BaseModel):
    title: str | None = Field(default=None, max_length=200)
    when: str = Field(
        max_length=4000,
        description="CEL over `customer`, `journeys` and `now`, as in an Audience document.",
    )


class AudienceOut(BaseModel):
    name: str
    title: str | None
    when: str


class AudiencePreview(AudienceOut):
    count: int = Field(description="Customers in the audience now.")
    scanned: int = Field(description="Customers of the read model looked at.")
    sample: list[str] = Field(description="The first customers of the audience, by id.")
    unevaluated: int = Field(
        description="Customers the expression failed on (a missing attribute): not members."
    )
    first_error: str | None


class EnrolmentIn(BaseModel):
    playbook: str = Field(pattern=NAME_PATTERN)
    batch_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="Names the batch (default: generated). A batch id is used once.",
    )
    rate_per_second: float | None = Field(
        default=None, gt=0, le=10_000, description="Default: SOPFLOW_ENROLMENT_RATE_PER_SECOND."
    )


def _out(segment: SegmentPlan) -> AudienceOut:
    return AudienceOut(name=segment.name, title=segment.title, when=segment.when)


async def _segment(database: DatabaseDep, name: str) -> SegmentPlan:
    segment = await asyncio.to_thread(load_segment, database, name)
    if segment is None:
        raise ApiError(404, "audience_not_found", f"no audience '{name}'")
    return segment


@router.get("/audiences", response_model=list[AudienceOut], responses=ERRORS)
async def get_audiences(database: DatabaseDep, _: OperatorDep) -> list[AudienceOut]:
    return [_out(s) for s in await asyncio.to_thread(list_segments, database)]


@router.put("/audiences/{name}", response_model=AudienceOut, responses=ERRORS)
async def put_audience(
    name: Name, body: AudienceIn, database: DatabaseDep, principal: OperatorDep
) -> AudienceOut:
    """Create or replace an audience (as an Audience document deployed with playbooks)."""
    problem = check_segment(body.when)
    if problem:
        raise ApiError.invalid("when", problem)
    segment = SegmentPlan(name=name, title=body.title, when=body.when)
    by = f"{principal.name} (key {principal.key_id})"
    await asyncio.to_thread(save_segments, database, [segment], by)
    return _out(segment)


@router.get("/audiences/{name}", response_model=AudiencePreview, responses=ERRORS)
async def get_audience(name: Name, database: DatabaseDep, _: OperatorDep) -> AudiencePreview:
    """The audience with a preview: how many customers it holds now, and a sample."""
    segment = await _segment(database, name)
    preview = await asyncio.to_thread(preview_segment, database, segment)
    return AudiencePreview(
        **_out(segment).model_dump(),
        count=preview.count,
        scanned=preview.scanned,
        sample=preview.sample,
        unevaluated=preview.errors,
        first_error=preview.first_error,
    )


@router.post(
    "/audiences/{name}/enrolments",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchProgress,
    responses=ERRORS,
)
async def enrol_audience(
    name: Name,
    body: EnrolmentIn,
    database: DatabaseDep,
    plans: PlanStoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    _: OperatorDep,
) -> BatchProgress:
    """Start a batch that enrols every customer of the audience in the playbook (under the
    playbook's own re-entry rules and enrolment guard); follow it at
    GET /v1/enrolments/{batch_id}."""
    await _segment(database, name)
    version = (await plans.current_deployment()).playbooks.get(body.playbook)
    plan = await asyncio.to_thread(plans.load, version) if version else None
    if plan is None:
        raise ApiError(404, "playbook_not_found", f"no deployed playbook '{body.playbook}'")
    if plan.audience != Audience.CUSTOMER.value:
        raise ApiError.invalid("playbook", f"'{body.playbook}' is a {plan.audience} playbook")
    try:
        return await start_batch(
            temporal, settings, name, body.playbook, body.batch_id, body.rate_per_second
        )
    except BatchExists as e:
        raise ApiError(409, "batch_exists", str(e)) from e


@router.get("/enrolments/{batch_id}", response_model=BatchProgress, responses=ERRORS)
async def get_enrolment(batch_id: BatchId, temporal: TemporalDep, _: OperatorDep) -> BatchProgress:
    """A batch's progress: customers done, skipped (already enrolled) and failed."""
    progress = await batch_progress(temporal, batch_id)
    if progress is None:
        raise ApiError(404, "batch_not_found", f"no enrolment batch '{batch_id}'")
    return progress


@router.delete("/enrolments/{batch_id}", response_model=BatchProgress, responses=ERRORS)
async def delete_enrolment(
    batch_id: BatchId, temporal: TemporalDep, _: OperatorDep
) -> BatchProgress:
    """Cancel a batch: it stops after the chunks of signals in flight; what went out stays."""
    if not await cancel_batch(temporal, batch_id):
        raise ApiError(404, "batch_not_found", f"no enrolment batch '{batch_id}'")
    progress = await batch_progress(temporal, batch_id)
    assert progress is not None
    return progress
