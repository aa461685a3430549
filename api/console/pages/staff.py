"""Staff: my tasks (overdue first) with complete and postpone, sends awaiting my confirmation;
for operators, every staff member's execution rate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.console.auth import PostingUser, UserDep
from api.console.rendering import render
from api.deps import DatabaseDep, PlanStoreDep, SettingsDep, TemporalDep
from api.routes.tasks import (
    Postpone,
    TaskPublic,
    complete_task,
    list_tasks,
    postpone_task,
    task_stats,
)
from sopflow.store.console_queries import awaiting_confirmation

router = APIRouter()
# One-click postponements offered on each task.
POSTPONE_CHOICES = ("2h", "1d", "3d")


def overdue_first(tasks: list[TaskPublic]) -> list[TaskPublic]:
    """Overdue tasks first (the most overdue on top), then by due time."""
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(tasks, key=lambda t: (not t.overdue, t.due_at or far, t.task_id))


@router.get("/staff")
async def staff_page(
    request: Request,
    user: UserDep,
    database: DatabaseDep,
    assignee: str | None = None,
) -> Response:
    # A staff key sees its own inbox whatever it asks for (list_tasks refuses others).
    who = user.staff_id if user.staff_id is not None else (assignee or None)
    tasks: list[TaskPublic] = []
    for status in ("open", "escalated"):
        page = await list_tasks(
            database, user.principal, assignee=who, status_filter=status, limit=200
        )
        tasks.extend(page.tasks)
    pending = await asyncio.to_thread(awaiting_confirmation, database, who)
    stats = await task_stats(database, user.principal) if user.is_operator else []
    context: dict[str, Any] = {
        "tasks": overdue_first(tasks),
        "pending": pending,
        "stats": stats,
        "who": who,
        "choices": POSTPONE_CHOICES,
    }
    return render(request, "staff.html", context, user=user)


@router.post("/tasks/{task_id:path}/complete")
async def complete(
    request: Request,
    task_id: str,
    user: PostingUser,
    database: DatabaseDep,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
) -> Response:
    await complete_task(task_id, database, user.principal, temporal, plans, settings)
    if request.headers.get("HX-Request") != "true":  # a plain form post (no script)
        return RedirectResponse("/console/staff", status_code=303)
    return render(request, "task_done.html", {"task_id": task_id, "done": "completed"}, user=user)


@router.post("/tasks/{task_id:path}/postpone")
async def postpone(
    request: Request,
    task_id: str,
    user: PostingUser,
    database: DatabaseDep,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    settings: SettingsDep,
    by: Annotated[str, Form(max_length=20)] = "1d",
) -> Response:
    body = Postpone(by=by if by in POSTPONE_CHOICES else "1d")
    await postpone_task(task_id, body, database, user.principal, temporal, plans, settings)
    if request.headers.get("HX-Request") != "true":
        return RedirectResponse("/console/staff", status_code=303)
    return render(
        request,
        "task_done.html",
        {"task_id": task_id, "done": f"postponed by {body.by}"},
        user=user,
    )
