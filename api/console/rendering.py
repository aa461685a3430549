"""Templates: Jinja2 with autoescape always on, a few display filters, safe headers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.console.auth import User

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Every script is a vendored or console file served from here: no inline script runs, so
# a customer's text that slipped past escaping still could not execute. Mermaid and uPlot
# set inline styles on what they draw.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show customers and tasks: nothing is kept by shared caches or the back button.
    "Cache-Control": "no-store",
}


def local_time(value: datetime | None, zone: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "-"
    return value.astimezone(ZoneInfo(zone)).strftime(fmt)


def duration(seconds: float | None) -> str:
    """`3d 4h`, `2h 5m`, `40s`: the two largest units."""
    if seconds is None:
        return "-"
    left = round(seconds)
    if left < 60:
        return f"{left}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def short(version: str | None) -> str:
    return (version or "")[:12]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name: customers write text
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=duration, percent=percent, money=money, short=short)
    env.globals.update(local_time=local_time, timedelta=timedelta)
    return env


ENVIRONMENT = _environment()


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    user: User | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    settings = request.app.state.settings
    values: dict[str, Any] = {
        "request": request,
        "user": user,
        "csrf": user.csrf if user else "",
        "zone": settings.reporting_timezone,
        "path": request.url.path,
        "partial": request.headers.get("HX-Request") == "true",
    }
    values.update(context)
    page = ENVIRONMENT.get_template(template).render(**values)
    response = HTMLResponse(page, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    if headers:
        response.headers.update(headers)
    return response
