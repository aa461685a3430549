"""WeCom's error codes, what each means for a caller, and the typed errors the client raises.

Codes from the global error code list (developer doc 90313) as mirrored by xen0n/go-workwx
`errcodes/mod.go`, and from the endpoint docs (92135, 92599/92137, 97610, 92117).
"""

from __future__ import annotations

from enum import StrEnum

from sopflow.errors import SopflowError

SYSTEM_BUSY = -1
INVALID_SECRET = 40001  # "invalid credential": a stale token on an API, a wrong secret on gettoken
INVALID_CORP_ID = 40013
INVALID_ACCESS_TOKEN = 40014
INVALID_TAG_ID = 40068
INVALID_EXTERNAL_USERID = 40096
TAG_LIMIT_REACHED = 40126  # at most 3,000 corp tags
MISSING_ACCESS_TOKEN = 41001
INVALID_MSGID = 41047
NO_CUSTOMER_TO_SEND = 41048
INVALID_WELCOME_CODE = 41050  # unknown, or older than 20 seconds
WELCOME_ALREADY_SENT = 41051  # "the customer and the staff member have started chatting"
MASS_SEND_DISPATCHING = 41063  # just created, not yet queryable: try again shortly
MASS_SEND_CANCELLED = 41093
REMIND_LIMIT_REACHED = 41094  # at most 3 reminders per mass send per 24 hours
WELCOME_BEING_SENT = 41096  # another app is sending the welcome: retry
ACCESS_TOKEN_EXPIRED = 42001
RATE_LIMITED = 45009  # per API per corp per minute/hour/day, or per IP
CONCURRENCY_LIMITED = 45033
NOT_A_CONTACT = 84061  # the customer is not (or no longer) a contact of that staff member

MEANINGS: dict[int, str] = {
    SYSTEM_BUSY: "WeCom is busy",
    INVALID_SECRET: "invalid credential",
    INVALID_CORP_ID: "invalid corp id",
    INVALID_ACCESS_TOKEN: "invalid access token",
    INVALID_TAG_ID: "invalid tag or tag group id",
    INVALID_EXTERNAL_USERID: "invalid external user id",
    TAG_LIMIT_REACHED: "the corp has 3,000 tags already",
    MISSING_ACCESS_TOKEN: "access token missing",
    INVALID_MSGID: "invalid mass-send msgid",
    NO_CUSTOMER_TO_SEND: "no customer can receive this mass send",
    INVALID_WELCOME_CODE: "welcome code invalid or older than 20 seconds",
    WELCOME_ALREADY_SENT: "welcome already sent (the customer and staff member are chatting)",
    MASS_SEND_DISPATCHING: "mass send still being dispatched",
    MASS_SEND_CANCELLED: "mass send cancelled",
    REMIND_LIMIT_REACHED: "at most 3 reminders per mass send in 24 hours",
    WELCOME_BEING_SENT: "another app is sending the welcome",
    ACCESS_TOKEN_EXPIRED: "access token expired",
    RATE_LIMITED: "API call frequency limit reached",
    CONCURRENCY_LIMITED: "API concurrency limit reached",
    NOT_A_CONTACT: "not a contact of that staff member",
}

GETTOKEN = "gettoken"
SEND_WELCOME_MSG = "externalcontact/send_welcome_msg"


class ErrorKind(StrEnum):
    """What a caller should do about an error code."""

    TOKEN = "token"  # fetch a new access token and retry once
    RATE_LIMITED = "rate_limited"  # back off, then retry
    RETRY = "retry"  # transient: retry (the activity's retry policy)
    ALREADY_DONE = "already_done"  # the effect already happened: treat as success
    PERMANENT = "permanent"  # retrying cannot help


TOKEN_ERRORS = frozenset({INVALID_SECRET, INVALID_ACCESS_TOKEN, ACCESS_TOKEN_EXPIRED})
RATE_LIMIT_ERRORS = frozenset({RATE_LIMITED, CONCURRENCY_LIMITED})
RETRY_ERRORS = frozenset({SYSTEM_BUSY, WELCOME_BEING_SENT, MASS_SEND_DISPATCHING})


def classify(errcode: int, api: str | None = None) -> ErrorKind:
    """The kind of `errcode` as returned by `api` (some codes mean different things)."""
    if errcode in RATE_LIMIT_ERRORS:
        return ErrorKind.RATE_LIMITED
    if errcode in RETRY_ERRORS:
        return ErrorKind.RETRY
    if errcode in TOKEN_ERRORS:
        # From gettoken itself, 40001 is a wrong secret: a new token cannot be had.
        return ErrorKind.PERMANENT if api == GETTOKEN else ErrorKind.TOKEN
    if errcode == WELCOME_ALREADY_SENT and api == SEND_WELCOME_MSG:
        return ErrorKind.ALREADY_DONE
    return ErrorKind.PERMANENT


class WeComError(SopflowError):
    """WeCom answered an API call with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str, api: str) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        self.kind = classify(errcode, api)
        meaning = MEANINGS.get(errcode)
        detail = f"errcode {errcode} ({meaning})" if meaning else f"errcode {errcode}"
        super().__init__(f"WeCom {api} failed with {detail}: {errmsg}")

    @property
    def retryable(self) -> bool:
        return self.kind in (ErrorKind.TOKEN, ErrorKind.RATE_LIMITED, ErrorKind.RETRY)


class WeComRateLimited(WeComError):
    """45009 or 45033: retry after `backoff_seconds` (doubling while the limit persists)."""

    def __init__(self, errcode: int, errmsg: str, api: str, backoff_seconds: float) -> None:
        super().__init__(errcode, errmsg, api)
        self.backoff_seconds = backoff_seconds
        self.args = (f"{self.args[0]}; back off {backoff_seconds:g} s",)


class WeComUnavailable(SopflowError):
    """WeCom could not be reached, or answered with HTTP 5xx: retry later."""

    retryable = True


class WeComProtocolError(SopflowError):
    """WeCom answered with something that is not its JSON contract (a wrong API base URL,
    a proxy's error page): retrying will not help until the configuration changes."""

    retryable = False


class WeComNotConfigured(SopflowError):
    """A setting the call needs is missing (the message names it)."""

    retryable = False
