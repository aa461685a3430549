"""One JSON error shape everywhere; no stack trace ever reaches a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from api.models import ErrorBody, ErrorDetail, ErrorResponse
from sopflow.store.tasks import InvalidCursor
from workflows.client import CustomerNotFound, TemporalUnavailable

log = logging.getLogger("sopflow.api")


class ApiError(Exception):
    """Raise from a route to answer with `status` and the standard error body."""

    def __init__(
        self, status: int, code: str, message: str, details: list[ErrorDetail] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []

    @classmethod
    def invalid(
        cls,
        field: str,
        message: str,
        *,
        limit: str | None = None,
        nearest: str | None = None,
        code: str = "invalid_request",
    ) -> ApiError:
        """A 422 naming the refused field, with the limit it broke and the nearest valid
        name when there is one: every 422 of the API carries its details."""
        detail = ErrorDetail(field=field, message=message, limit=limit, nearest=nearest)
        return cls(422, code, f"{field}: {message}", [detail])


def error_response(
    status: int, code: str, message: str, details: list[ErrorDetail] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or []))
    # A detail's limit and nearest name appear only when there is one.
    return JSONResponse(status_code=status, content=body.model_dump(mode="json", exclude_none=True))


def _field_name(loc: tuple[object, ...]) -> str:
    # ("body", "customer_id") -> "customer_id"; the transport part says nothing useful.
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


# pydantic's error context keys that are limits, and how to say them.
_LIMITS = {
    "max_length": "at most {} characters",
    "min_length": "at least {} characters",
    "le": "at most {}",
    "lt": "less than {}",
    "ge": "at least {}",
    "gt": "more than {}",
    "pattern": "matching {}",
}


def _limit(ctx: dict[str, object] | None) -> str | None:
    for key, text in _LIMITS.items():
        if ctx and key in ctx:
            return text.format(ctx[key])
    return None


def _expected(ctx: dict[str, object] | None) -> str | None:
    # Enums and literals say what they expected: the valid values.
    return str(ctx["expected"]) if ctx and "expected" in ctx else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            ErrorDetail(
                field=_field_name(tuple(e["loc"])),
                message=str(e["msg"]),
                limit=_limit(e.get("ctx")),
                nearest=_expected(e.get("ctx")),
            )
            for e in exc.errors()
        ]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details)
        return error_response(422, "invalid_request", summary, details)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(CustomerNotFound)
    async def customer_not_found(_: Request, exc: CustomerNotFound) -> JSONResponse:
        return error_response(
            404,
            "customer_not_found",
            f"{exc}: send an event for it first (no call here creates a customer)",
        )

    @app.exception_handler(InvalidCursor)
    async def invalid_cursor(_: Request, exc: InvalidCursor) -> JSONResponse:
        detail = ErrorDetail(field="cursor", message=str(exc))
        return error_response(422, "invalid_request", f"cursor: {exc}", [detail])

    @app.exception_handler(TemporalUnavailable)
    async def temporal_unavailable(_: Request, exc: TemporalUnavailable) -> JSONResponse:
        log.warning("%s", exc)
        return error_response(503, "temporal_unavailable", str(exc))

    @app.exception_handler(RPCError)
    async def temporal_error(_: Request, exc: RPCError) -> JSONResponse:
        log.warning("Temporal call failed: %s", exc)
        return error_response(503, "temporal_unavailable", "Temporal did not answer; retry shortly")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the server log")
