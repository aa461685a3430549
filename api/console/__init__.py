"""The web console: server-rendered pages for operators and staff under /console.

Pages call the same functions as the JSON routes (api/routes/*) and the read-model queries
of sopflow/store/console_queries.py; templates are Jinja2 with autoescape on; the only
scripts are vendored files (htmx, Mermaid, uPlot) and static/console.js.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from temporalio.service import RPCError

from api.console.auth import ConsoleError, NotSignedIn
from api.console.pages import router
from api.console.rendering import STATIC, render
from api.errors import ApiError

__all__ = ["mount_console"]
HEADINGS = {
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    422: "Cannot do that",
    503: "Try again shortly",
}


def _wants_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


def mount_console(app: FastAPI) -> None:
    """Add the console's pages, static files and HTML error pages to the API app."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    async def not_signed_in(request: Request, _: Exception) -> Response:
        target = "/console/login"
        if request.url.path not in ("/console", "/console/"):
            target += "?next=" + quote(request.url.path, safe="/")
        if request.headers.get("HX-Request") == "true":
            # htmx would swap the sign-in page into a fragment: send the browser there.
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return render(
            request,
            "error.html",
            {"message": exc.message, "heading": HEADINGS.get(exc.status, "Error")},
            status=exc.status,
        )

    # The JSON API answers its errors as JSON; the same errors raised under /console
    # (a route function the console calls) become HTML pages.
    api_error: Any = app.exception_handlers[ApiError]
    temporal_error: Any = app.exception_handlers[RPCError]

    async def api_error_as_page(request: Request, exc: Exception) -> Response:
        if not _wants_console(request):
            response: Response = await api_error(request, exc)
            return response
        assert isinstance(exc, ApiError)
        return await console_error(request, ConsoleError(exc.status, exc.message))

    async def temporal_error_as_page(request: Request, exc: Exception) -> Response:
        if not _wants_console(request):
            response: Response = await temporal_error(request, exc)
            return response
        return await console_error(
            request, ConsoleError(503, "Temporal did not answer; retry shortly")
        )

    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(ConsoleError, console_error)
    app.add_exception_handler(ApiError, api_error_as_page)
    app.add_exception_handler(RPCError, temporal_error_as_page)
