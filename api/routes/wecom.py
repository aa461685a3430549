"""WeCom's callback URL: `GET` verifies the URL, `POST` brings contact and chat changes.

WeCom cannot send an API key: the signature (with the callback Token) is the
authentication, the AES key the privacy, the corp id inside the ciphertext the proof that
the callback is ours. A callback is accepted only once its events reached their workflows
(signal-with-start, durable once Temporal accepts it): when Temporal is unavailable the
answer is 503 and WeCom delivers it again. A callback delivered several times acts once:
its events' idempotency keys derive from `callback_key`, and ingest refuses a key it has
sent (the workflow also drops a key it has seen). A staff member's edit also starts the
tag refresh (worker/wecom/tag_refresh.py), one per callback.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import DatabaseDep, OperatorDep, PlanStoreDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.ingest import ingest
from api.models import CUSTOMER_ID_PATTERN, ErrorResponse, EventIn
from sopflow.settings import Settings
from sopflow.store.tables import EventKey
from sopflow.wecom.callbacks import (
    Callback,
    CallbackEvent,
    ExternalContactEdited,
    MalformedCallback,
    UnknownCallback,
    callback_key,
    customer_events,
    parse_callback,
)
from sopflow.wecom.crypto import (
    BadCiphertext,
    BadSignature,
    CallbackCryptoError,
    InvalidAesKey,
    MalformedEnvelope,
    WeComCrypto,
    WrongReceiveId,
)
from sopflow.wecom.group_callbacks import group_events
from workflows.client import TemporalUnavailable
from workflows.tag_refresh_contracts import (
    TAG_REFRESH_WORKFLOW_NAME,
    TagRefresh,
    tag_refresh_workflow_id,
)

log = logging.getLogger("sopflow.api.wecom")
router = APIRouter(prefix="/v1/wecom", tags=["wecom"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 403, 404, 503)
}
SUCCESS = "success"  # what WeCom expects in the body of an accepted callback
_ID = re.compile(CUSTOMER_ID_PATTERN)
_SUBJECT_MAX = EventKey.__table__.c.customer_id.type.length  # type: ignore[attr-defined]

Signature = Annotated[str, Query(min_length=1, max_length=64)]
Timestamp = Annotated[str, Query(min_length=1, max_length=20)]
Nonce = Annotated[str, Query(min_length=1, max_length=64)]


@dataclass
class CallbackCounts:
    """What this API process did with the callbacks it received (logged as well)."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1


class CallbackStats(BaseModel):
    counts: dict[str, int]


def callback_counts(request: Request) -> CallbackCounts:
    state = request.app.state
    if not hasattr(state, "wecom_callbacks"):
        state.wecom_callbacks = CallbackCounts()
    counts: CallbackCounts = state.wecom_callbacks
    return counts


def _crypto(settings: SettingsDep) -> WeComCrypto:
    """The callback crypto of the settings; the route answers 404 while it is unset."""
    token, key, corp = (
        settings.wecom_callback_token,
        settings.wecom_callback_aes_key,
        settings.wecom_corp_id,
    )
    if token is None or key is None or not corp:
        raise ApiError(
            404,
            "wecom_callback_not_configured",
            "the WeCom callback URL is off: set SOPFLOW_WECOM_CORP_ID, "
            "SOPFLOW_WECOM_CALLBACK_TOKEN and SOPFLOW_WECOM_CALLBACK_AES_KEY",
        )
    try:
        return WeComCrypto(token.get_secret_value(), key.get_secret_value(), corp)
    except InvalidAesKey as error:
        raise ApiError(503, "wecom_callback_misconfigured", f"{error}") from error


# Declared first in each route: an unconfigured URL answers before anything else is needed.
CryptoDep = Annotated[WeComCrypto, Depends(_crypto)]


def _refuse(error: CallbackCryptoError | MalformedCallback, counts: CallbackCounts) -> ApiError:
    """4xx for a callback that cannot be trusted or read; nothing of it is recorded."""
    kinds: dict[type[Exception], tuple[int, str]] = {
        BadSignature: (403, "bad_signature"),
        WrongReceiveId: (403, "wrong_corp"),
        BadCiphertext: (400, "bad_ciphertext"),
        MalformedEnvelope: (400, "malformed_callback"),
        MalformedCallback: (400, "malformed_callback"),
    }
    status, code = kinds.get(type(error), (400, "bad_callback"))
    counts.add(code)
    log.warning("WeCom callback refused (%s): %s", code, error)
    return ApiError(status, code, str(error))


def _check_fresh(timestamp: str, settings: Settings, counts: CallbackCounts) -> None:
    """A signed callback is still refused outside the replay window: a recorded delivery
    replayed later than that is not WeCom's retry."""
    window = settings.wecom_callback_max_age_seconds
    if not timestamp.isdigit():
        counts.add("stale")
        raise ApiError(400, "bad_timestamp", f"timestamp '{timestamp}' is not Unix seconds")
    age = time.time() - int(timestamp)
    if abs(age) > window:
        counts.add("stale")
        raise ApiError(
            403,
            "stale_callback",
            f"callback timestamp is {abs(age):.0f} s {'old' if age > 0 else 'ahead'}: "
            f"at most {window} s either way (SOPFLOW_WECOM_CALLBACK_MAX_AGE_SECONDS); "
            "check the server's clock",
        )


@router.get("/callback", response_class=PlainTextResponse, responses=ERRORS)
async def verify_url(
    crypto: CryptoDep,
    request: Request,
    msg_signature: Signature,
    timestamp: Timestamp,
    nonce: Nonce,
    echostr: Annotated[str, Query(min_length=1, max_length=4096)],
) -> PlainTextResponse:
    """WeCom's URL verification when the admin saves the callback URL: the decrypted
    `echostr` as plain text. No API key: the signature authenticates WeCom."""
    counts = callback_counts(request)
    try:
        plain = crypto.verify_url(msg_signature, timestamp, nonce, echostr)
    except CallbackCryptoError as error:
        raise _refuse(error, counts) from error
    counts.add("url_verified")
    return PlainTextResponse(plain)


@router.post("/callback", response_class=PlainTextResponse, responses=ERRORS)
async def receive_callback(
    crypto: CryptoDep,
    request: Request,
    settings: SettingsDep,
    temporal: TemporalDep,
    plans: PlanStoreDep,
    database: DatabaseDep,
    msg_signature: Signature,
    timestamp: Timestamp,
    nonce: Nonce,
) -> PlainTextResponse:
    """One callback of WeCom's customer contact (contacts, chats, the tag library):
    verified, decrypted, mapped to customer and group events and handed to their
    workflows before the answer, `success`. A repeat acts once; a callback sopflow does
    not act on is answered `success` and counted. 503 when Temporal is unavailable:
    WeCom delivers it again."""
    counts = callback_counts(request)
    body = await request.body()
    try:
        xml = crypto.decrypt_callback(msg_signature, timestamp, nonce, body)
    except CallbackCryptoError as error:
        raise _refuse(error, counts) from error
    _check_fresh(timestamp, settings, counts)
    try:
        callback = parse_callback(xml)
    except MalformedCallback as error:
        raise _refuse(error, counts) from error
    if callback.to_user_name != crypto.receive_id:
        counts.add("wrong_corp")
        raise ApiError(
            403,
            "wrong_corp",
            f"callback is for corp '{callback.to_user_name}', not SOPFLOW_WECOM_CORP_ID",
        )
    requests = _requests(callback, counts)
    if not requests:
        outcome = "unknown" if isinstance(callback, UnknownCallback) else "no_events"
        counts.add(outcome)
        log.info("WeCom callback %s/%s: nothing to do", callback.event, callback.change_type)
        return PlainTextResponse(SUCCESS)
    try:
        accepted = await ingest(
            requests,
            batch=True,
            temporal=temporal,
            plans=plans,
            settings=settings,
            database=database,
        )
    except ApiError as refused:
        if refused.status >= 500:
            raise
        # WeCom would deliver it again and again: record why and answer.
        counts.add("refused_events")
        log.warning("WeCom callback %s: events refused: %s", callback.event, refused.message)
        return PlainTextResponse(SUCCESS)
    if isinstance(callback, ExternalContactEdited):
        await _refresh_tags(callback, temporal, settings)
    counts.add("duplicate" if all(a.duplicate for a in accepted) else "accepted")
    return PlainTextResponse(SUCCESS)


async def _refresh_tags(
    callback: ExternalContactEdited, temporal: TemporalDep, settings: SettingsDep
) -> None:
    """A staff member's edit carries no tags: a workflow reads them back from WeCom (one
    per callback, so a repeat starts nothing). Only where a worker can call WeCom."""
    if not (settings.wecom_corp_id and settings.wecom_secret):
        return
    key = callback_key(callback)
    request = TagRefresh(
        customer_id=callback.external_user_id,
        staff_user_id=callback.user_id,
        occurred_at=callback.create_time,
        callback_key=key,
    )
    try:
        await temporal.start_workflow(
            TAG_REFRESH_WORKFLOW_NAME,
            request,
            id=tag_refresh_workflow_id(key),
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass  # this callback's refresh exists
    except RPCError as error:
        raise TemporalUnavailable(f"Temporal did not accept the tag refresh: {error}") from error


def _requests(callback: Callback, counts: CallbackCounts) -> list[EventIn]:
    """The callback's customer and group events as ingest requests; an id sopflow cannot
    hold (too long, odd characters) is skipped and counted, never a failure."""
    requests: list[EventIn] = []
    for event in customer_events(callback):
        try:
            requests.append(_request(event))
        except ValidationError:
            counts.add("skipped_events")
            log.warning("WeCom callback: customer id %r refused", event.customer_id)
    for event in group_events(callback):
        chat_id = event.customer_id.partition("/")[2]
        if not _ID.match(chat_id) or len(event.customer_id) > _SUBJECT_MAX:
            counts.add("skipped_events")
            log.warning("WeCom callback: chat id %r refused", chat_id)
            continue
        # A group's subject id holds a `/`, which a customer id may not: built, not parsed.
        requests.append(EventIn.model_construct(**_fields(event)))
    return requests


def _fields(event: CallbackEvent) -> dict[str, Any]:
    return {
        "customer_id": event.customer_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "data": event.data,
        "idempotency_key": event.idempotency_key,
    }


def _request(event: CallbackEvent) -> EventIn:
    return EventIn.model_validate(_fields(event))


@router.get("/callback/stats", response_model=CallbackStats, responses=ERRORS)
async def callback_stats(request: Request, _: OperatorDep) -> CallbackStats:
    """What this API process did with WeCom's callbacks since it started: accepted,
    duplicate, unknown, no_events, refused (bad_signature, stale, ...)."""
    return CallbackStats(counts=dict(callback_counts(request).counts))
