"""Staff tasks: an inbox per assignee, complete and postpone, execution statistics."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.deps import DatabaseDep, PlanStoreDep, SettingsDep, StaffDep, TemporalDep
from api.errors import ApiError
from api.models import ErrorResponse
from sopflow.core.state import CustomerEvent
from sopflow.language.durations import parse_duration
from sopflow.store import tasks as task_store
from sopflow.store.keys import Principal, Role
from sopflow.store.tables import TaskRecord
from workflows.client import send_events

router = APIRouter(prefix="/v1", tags=["tasks"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}


class TaskPublic(BaseModel):
    task_id: str
    customer_id: str
    playbook: str
    stage: str
    title: str
    script: str | None
    assignee: str
    status: str
    overdue: bool
    created_at: datetime
    due_at: datetime | None
    completed_at: datetime | None
    escalated_at: datetime | None


class TaskPage(BaseModel):
    tasks: list[TaskPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class Postpone(BaseModel):
    until: AwareDatetime | None = None
    by: str | None = Field(default=None, description="A duration: 2h, 1d.")

    @model_validator(mode="after")
    def _one_of(self) -> Postpone:
        if (self.until is None) == (self.by is None):
            raise ValueError("give exactly one of until (a time) or by (a duration)")
        if self.by is not None:
            parse_duration(self.by)
        return self


class TaskAccepted(BaseModel):
    task_id: str
    status: str


class StaffStats(BaseModel):
    assignee: str
    total: int
    completed: int
    open: int
    overdue: int
    escalated: int
    execution_rate: float = Field(description="completed / total")


def _public(task: TaskRecord, now: datetime) -> TaskPublic:
    overdue = task.status == "open" and task.due_at is not None and task.due_at < now
    return TaskPublic(
        task_id=task.task_id,
        customer_id=task.customer_id,
        playbook=task.playbook,
        stage=task.stage,
        title=task.title,
        script=task.script,
        assignee=task.assignee,
        status=task.status,
        overdue=overdue,
        created_at=task.created_at,
        due_at=task.due_at,
        completed_at=task.completed_at,
        escalated_at=task.escalated_at,
    )


def _assignee_for(principal: Principal, asked: str | None) -> str | None:
    """Staff see only their own inbox; operators any, or all."""
    if principal.role == Role.STAFF:
        if asked not in (None, principal.staff_id):
            raise ApiError(403, "forbidden", "a staff key sees only its own tasks")
        return principal.staff_id
    return asked


@router.get("/tasks", response_model=TaskPage, responses=ERRORS)
async def list_tasks(
    database: DatabaseDep,
    principal: StaffDep,
    assignee: str | None = None,
    status_filter: Annotated[
        Literal["open", "overdue", "completed", "escalated"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> TaskPage:
    """A staff inbox, soonest due first; `status=overdue` is open and past its due time."""
    who = _assignee_for(principal, assignee)
    now = datetime.now(UTC)
    after = task_store.Cursor.decode(cursor) if cursor else None
    page, following = await asyncio.to_thread(
        task_store.list_tasks, database, who, status_filter, limit, after, now
    )
    return TaskPage(
        tasks=[_public(t, now) for t in page],
        next_cursor=following.encode() if following else None,
    )


async def _task_for(database: DatabaseDep, principal: Principal, task_id: str) -> TaskRecord:
    task = await asyncio.to_thread(task_store.get_task, database, task_id)
    if task is None:
        raise ApiError(404, "task_not_found", f"no task '{task_id}'")
    if principal.role == Role.STAFF and task.assignee != principal.staff_id:
        raise ApiError(403, "forbidden", "this task is assigned to someone else")
    return task


async def _tell_workflow(
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    task: TaskRecord,
    kind: str,
    data: dict[str, Any],
) -> None:
    event = CustomerEvent(
        customer_id=task.customer_id,
        type=kind,
        occurred_at=datetime.now(UTC),
        data={"task_id": task.task_id, **data},
        idempotency_key=f"{kind}:{task.task_id}:{json.dumps(data)}",
    )
    await send_events(temporal, settings, [event], plans.deployment())


@router.post(
    "/tasks/{task_id:path}/complete",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses=ERRORS,
)
async def complete_task(
    task_id: str,
    database: DatabaseDep,
    principal: StaffDep,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
) -> TaskAccepted:
    """Mark a task done; the customer's journey goes on as its playbook says."""
    task = await _task_for(database, principal, task_id)
    if task.status != "completed":
        await _tell_workflow(temporal, plans, settings, task, "task.completed", {})
        await asyncio.to_thread(task_store.mark_completed, database, task_id, datetime.now(UTC))
    return TaskAccepted(task_id=task_id, status="completed")


@router.post(
    "/tasks/{task_id:path}/postpone",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses=ERRORS,
)
async def postpone_task(
    task_id: str,
    body: Postpone,
    database: DatabaseDep,
    principal: StaffDep,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
) -> TaskAccepted:
    """Move a task's due time (and its escalation) later."""
    task = await _task_for(database, principal, task_id)
    if task.status == "completed":
        raise ApiError.invalid("task_id", "the task is completed already")
    data = {"until": body.until.isoformat()} if body.until else {"by": body.by}
    await _tell_workflow(temporal, plans, settings, task, "task.postponed", data)
    return TaskAccepted(task_id=task_id, status="open")


@router.get("/tasks/stats", response_model=list[StaffStats], responses=ERRORS)
async def task_stats(database: DatabaseDep, principal: StaffDep) -> list[StaffStats]:
    """Execution per staff member: how many tasks, done, open, overdue, escalated."""
    who = _assignee_for(principal, None)
    rows = await asyncio.to_thread(task_store.staff_stats, database, who, datetime.now(UTC))
    return [
        StaffStats(
            assignee=r.assignee,
            total=r.total,
            completed=r.completed,
            open=r.open,
            overdue=r.overdue,
            escalated=r.escalated,
            execution_rate=round(r.completed / r.total, 4) if r.total else 0.0,
        )
        for r in rows
    ]
