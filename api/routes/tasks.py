"""Staff tasks: an inbox per assignee, complete and postpone, execution statistics."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import and_, case, func, or_, select, update

from api.deps import DatabaseDep, PlanStoreDep, SettingsDep, StaffDep, TemporalDep
from api.errors import ApiError
from api.models import ErrorResponse
from sopflow.core.state import CustomerEvent
from sopflow.language.durations import parse_duration
from sopflow.store.keys import Principal, Role
from sopflow.store.tables import TaskRecord
from workflows.client import signal_with_start
from workflows.contracts import EventSignal

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


def _encode(task: TaskRecord) -> str:
    key = [task.due_at.isoformat() if task.due_at else "", task.task_id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode(cursor: str) -> tuple[datetime | None, str]:
    try:
        due, task_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return (datetime.fromisoformat(due) if due else None), str(task_id)
    except (ValueError, TypeError) as e:
        raise ApiError.invalid("cursor", "not a cursor from this API") from e


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
    query = select(TaskRecord)
    if who is not None:
        query = query.where(TaskRecord.assignee == who)
    if status_filter == "overdue":
        query = query.where(TaskRecord.status == "open", TaskRecord.due_at < now)
    elif status_filter is not None:
        query = query.where(TaskRecord.status == status_filter)
    if cursor:
        due, task_id = _decode(cursor)
        query = query.where(
            or_(
                TaskRecord.due_at > due,
                and_(TaskRecord.due_at == due, TaskRecord.task_id > task_id),
            )
        )
    query = query.order_by(TaskRecord.due_at, TaskRecord.task_id).limit(limit + 1)

    def fetch() -> list[TaskRecord]:
        with database.session() as session:
            return list(session.scalars(query))

    rows = await asyncio.to_thread(fetch)
    page, more = rows[:limit], len(rows) > limit
    return TaskPage(
        tasks=[_public(t, now) for t in page], next_cursor=_encode(page[-1]) if more else None
    )


async def _task_for(database: DatabaseDep, principal: Principal, task_id: str) -> TaskRecord:
    def fetch() -> TaskRecord | None:
        with database.session() as session:
            return session.get(TaskRecord, task_id)

    task = await asyncio.to_thread(fetch)
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
    await signal_with_start(
        temporal, settings, EventSignal(event=event, deployment=await plans.current_deployment())
    )


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

        def mark() -> None:
            # The inbox answers at once; the journey ledger confirms with the event's time.
            with database.session() as session, session.begin():
                session.execute(
                    update(TaskRecord)
                    .where(TaskRecord.task_id == task_id)
                    .values(status="completed", completed_at=datetime.now(UTC))
                )

        await asyncio.to_thread(mark)
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
    now = datetime.now(UTC)
    counts = (
        select(
            TaskRecord.assignee,
            func.count(),
            func.sum(case((TaskRecord.status == "completed", 1), else_=0)),
            func.sum(case((TaskRecord.status == "open", 1), else_=0)),
            func.sum(
                case((and_(TaskRecord.status == "open", TaskRecord.due_at < now), 1), else_=0)
            ),
            func.sum(case((TaskRecord.status == "escalated", 1), else_=0)),
        )
        .group_by(TaskRecord.assignee)
        .order_by(TaskRecord.assignee)
    )
    who = _assignee_for(principal, None)
    if who is not None:
        counts = counts.where(TaskRecord.assignee == who)

    def fetch() -> list[Any]:
        with database.session() as session:
            return list(session.execute(counts).all())

    return [
        StaffStats(
            assignee=a,
            total=t,
            completed=int(c or 0),
            open=int(o or 0),
            overdue=int(d or 0),
            escalated=int(e or 0),
            execution_rate=round(int(c or 0) / t, 4) if t else 0.0,
        )
        for a, t, c, o, d, e in await asyncio.to_thread(fetch)
    ]
