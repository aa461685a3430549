"""Sign in with an API key, sign out."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.console.auth import (
    CSRF_FIELD,
    PostingUser,
    check_csrf,
    clear_session,
    new_session,
    read_session,
    write_session,
)
from api.console.rendering import render
from api.deps import DatabaseDep
from sopflow.store.keys import Role, authenticate

router = APIRouter()


def _next_page(target: str | None, role: Role) -> str:
    # Only a console path: never send a browser elsewhere after signing in.
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/" if role == Role.OPERATOR else "/console/staff"


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    session = read_session(request)
    fresh = session is None
    session = session or new_session()
    response = render(request, "login.html", {"csrf": session.csrf, "next": next or ""})
    if fresh:
        write_session(request, response, session)
    return response


@router.post("/login")
async def login(
    request: Request,
    database: DatabaseDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    session = read_session(request)
    check_csrf(session.csrf if session else "", csrf_token)
    assert session is not None
    principal = await asyncio.to_thread(authenticate, database, api_key.strip())
    problem = None
    if principal is None:
        problem = (401, "invalid or revoked API key")
    elif principal.role == Role.INGEST:
        problem = (403, "this key can only send events (role ingest): use an operator or staff key")
    if problem is not None:
        status, message = problem
        return render(
            request,
            "login.html",
            {"csrf": session.csrf, "next": next or "", "error": message},
            status=status,
        )
    assert principal is not None
    response = RedirectResponse(_next_page(next, principal.role), status_code=303)
    # A new session (and CSRF token) at sign-in: a token seen before it is worth nothing.
    write_session(request, response, new_session(principal.key_id))
    return response


@router.post("/logout")
async def logout(_: PostingUser) -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    clear_session(response)
    return response
