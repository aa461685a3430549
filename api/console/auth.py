"""Console sign-in: an API key in, a signed session cookie out, a CSRF token per session.

The cookie holds only the key's id, a random CSRF token and the time it was signed
(itsdangerous: HMAC-SHA1 over the payload with a server secret, timestamped). Every request
looks the key up again, so revoking a key (`sopflow keys revoke`) signs its sessions out at
once. The key itself never goes into the cookie. A session lasts SESSION_SECONDS.

Every POST carries the session's CSRF token, as the form field `csrf_token` or (htmx) the
header `X-CSRF-Token`; without it, or with another session's, the request is refused with
403 before it does anything. The sign-in form has one too, from an anonymous session, so
another site cannot sign a browser in with the attacker's key.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from api.deps import DatabaseDep
from sopflow.settings import Settings
from sopflow.store.console_queries import principal_of
from sopflow.store.keys import Principal, Role

COOKIE = "sopflow_console"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SECRET_FILE = "console-secret"


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in form."""


class ConsoleError(Exception):
    """Answer with an HTML error page (or an htmx fragment) and this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Session:
    csrf: str
    key_id: str | None = None


@dataclass(frozen=True)
class User:
    principal: Principal
    csrf: str

    @property
    def is_operator(self) -> bool:
        return self.principal.role == Role.OPERATOR

    @property
    def staff_id(self) -> str | None:
        """The staff member this user is, for a staff key; None for an operator."""
        return None if self.is_operator else self.principal.staff_id


def console_secret(settings: Settings) -> str:
    """SOPFLOW_CONSOLE_SECRET when set (every API replica must share it), else a random
    secret kept in `<home>/console-secret` (mode 0600), made on first use."""
    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value()
    path: Path = settings.home / SECRET_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    settings.home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(secret + "\n", encoding="utf-8")
    return secret


def _serializer(request: Request) -> URLSafeTimedSerializer:
    state = request.app.state
    serializer: URLSafeTimedSerializer | None = getattr(state, "console_serializer", None)
    if serializer is None:
        serializer = URLSafeTimedSerializer(
            console_secret(state.settings), salt="sopflow-console-session"
        )
        state.console_serializer = serializer
    return serializer


def read_session(request: Request) -> Session | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data: Any = _serializer(request).loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:  # also expired (SignatureExpired is a BadSignature)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), str):
        return None
    key_id = data.get("k")
    return Session(csrf=data["c"], key_id=key_id if isinstance(key_id, str) else None)


def _served_over_tls(request: Request) -> bool:
    # Directly, or behind a proxy that says so (uvicorn trusts X-Forwarded-Proto from
    # its forwarded_allow_ips; a Secure flag set on a plain request harms nothing).
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return request.url.scheme == "https" or forwarded == "https"


def write_session(request: Request, response: Response, session: Session) -> None:
    payload = {"c": session.csrf, "k": session.key_id}
    response.set_cookie(
        COOKIE,
        _serializer(request).dumps(payload),
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        # Lax: a link from WeCom's chat to the console still arrives signed in; a
        # cross-site POST never carries the cookie.
        samesite="lax",
        secure=_served_over_tls(request),
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console")


def new_session(key_id: str | None = None) -> Session:
    return Session(csrf=secrets.token_urlsafe(32), key_id=key_id)


async def current_user(request: Request, database: DatabaseDep) -> User:
    session = read_session(request)
    if session is None or session.key_id is None:
        raise NotSignedIn
    principal = await asyncio.to_thread(principal_of, database, session.key_id)
    if principal is None or principal.role == Role.INGEST:
        raise NotSignedIn  # revoked since the session began
    return User(principal=principal, csrf=session.csrf)


UserDep = Annotated[User, Depends(current_user)]


async def operator(user: UserDep) -> User:
    if not user.is_operator:
        raise ConsoleError(403, "this page is for operators; staff keys see their own work")
    return user


OperatorUser = Annotated[User, Depends(operator)]


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise ConsoleError(403, "missing or wrong CSRF token: reload the page and try again")


async def _posted_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    form = await request.form()  # parsed once; the route reads the cached form
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None


async def csrf_user(request: Request, user: UserDep) -> User:
    """The signed-in user of a POST whose CSRF token matches the session's."""
    check_csrf(user.csrf, await _posted_token(request))
    return user


async def csrf_operator(request: Request, user: OperatorUser) -> User:
    check_csrf(user.csrf, await _posted_token(request))
    return user


PostingUser = Annotated[User, Depends(csrf_user)]
PostingOperator = Annotated[User, Depends(csrf_operator)]


async def anonymous_csrf(request: Request) -> str | None:
    """The CSRF token of the browser's (anonymous or signed-in) session, if any."""
    session = read_session(request)
    return session.csrf if session else None
