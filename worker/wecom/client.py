"""An async WeCom API client: cached tokens, one refresh at a time, typed errors, a rate limit.

- Access tokens are cached per secret until `expires_in` minus a margin. Concurrent
  callers share one fetch (an asyncio lock), and a token error (40001/40014/42001) from an
  API triggers exactly one refresh and one retry of that call; callers that hit the same
  stale token together still cause one refresh. One client per process and corp: the cache
  lives in the client.
- 45009/45033 raise WeComRateLimited with a suggested back-off that doubles while the limit
  persists (WeCom blocks a minute, an hour or the rest of the day, doc 90454).
- Network errors and HTTP 5xx raise WeComUnavailable (retryable); other non-JSON answers
  raise WeComProtocolError (a wrong API base URL, not worth retrying).
- Every request, gettoken included, first takes a token from the corp's bucket
  (`wecom_requests_per_second`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import httpx
from pydantic import ValidationError

from sopflow.settings import Settings
from sopflow.wecom import api
from sopflow.wecom.errors import (
    CONCURRENCY_LIMITED,
    ErrorKind,
    WeComError,
    WeComNotConfigured,
    WeComProtocolError,
    WeComRateLimited,
    WeComUnavailable,
    classify,
)

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin"

RequestT = TypeVar("RequestT", bound=api.WeComRequest)
ResponseT = TypeVar("ResponseT", bound=api.WeComResponse)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """An async token bucket: `rate` requests per second, bursts up to `capacity`.

    Waiters queue on a lock, so they are served in arrival order and none starves.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("requests per second must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                await self._sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


class AccessTokenCache:
    """One secret's access token: fetched once, reused until it is about to expire."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[api.GetTokenResponse]],
        margin_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin_seconds
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _valid(self, stale: str | None) -> bool:
        return self._token is not None and self._token != stale and self._clock() < self._expires_at

    async def get(self, stale: str | None = None) -> str:
        """The current token; a new one when it expired or equals `stale` (refused by WeCom)."""
        if self._valid(stale):
            assert self._token is not None
            return self._token
        async with self._lock:
            # Whoever held the lock may have refreshed already: use theirs.
            if self._valid(stale):
                assert self._token is not None
                return self._token
            self.fetches += 1
            answer = await self._fetch()
            # Refresh early, but never sooner than half the lifetime (short-lived test tokens).
            lifetime = answer.expires_in - min(self._margin, answer.expires_in / 2)
            self._token = answer.access_token
            self._expires_at = self._clock() + lifetime
            return self._token

    def forget(self) -> None:
        self._token = None


class WeComClient:
    """The WeCom server API for one corp, with typed methods for the endpoints sopflow uses."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        app_secret: str | None = None,
        agent_id: int | None = None,
        api_base: str = DEFAULT_API_BASE,
        requests_per_second: float = 20.0,
        http: httpx.AsyncClient | None = None,
        timeout_seconds: float = 10.0,
        token_margin_seconds: float = 300.0,
        rate_limit_backoff_seconds: float = 60.0,
        concurrency_backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 3600.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.api_base = api_base.rstrip("/")
        self._secrets = {"contact": secret, "app": app_secret or secret}
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_seconds)
        self._bucket = TokenBucket(requests_per_second, clock=clock, sleep=sleep)
        self._tokens = {
            kind: AccessTokenCache(self._fetcher(kind), token_margin_seconds, clock)
            for kind in ("contact", "app")
        }
        self._rate_limit_backoff = rate_limit_backoff_seconds
        self._concurrency_backoff = concurrency_backoff_seconds
        self._max_backoff = max_backoff_seconds
        # (API, errcode) -> rate-limit answers in a row; a success of the API clears it.
        self._rate_limited_in_a_row: dict[tuple[str, int], int] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, http: httpx.AsyncClient | None = None
    ) -> WeComClient:
        if not settings.wecom_corp_id or settings.wecom_secret is None:
            raise WeComNotConfigured(
                "WeCom is not configured: set SOPFLOW_WECOM_CORP_ID and SOPFLOW_WECOM_SECRET"
            )
        app_secret = settings.wecom_app_secret
        return cls(
            settings.wecom_corp_id,
            settings.wecom_secret.get_secret_value(),
            app_secret=app_secret.get_secret_value() if app_secret else None,
            agent_id=settings.wecom_agent_id,
            api_base=settings.wecom_api_base,
            requests_per_second=settings.wecom_requests_per_second,
            http=http,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> WeComClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing ----------------------------------------------------------------------

    def token_fetches(self, kind: Literal["contact", "app"] = "contact") -> int:
        """How many times this client fetched a token of `kind` (for tests and metrics)."""
        return self._tokens[kind].fetches

    def _fetcher(self, kind: str) -> Callable[[], Awaitable[api.GetTokenResponse]]:
        async def fetch() -> api.GetTokenResponse:
            request = api.GetTokenRequest(corpid=self.corp_id, corpsecret=self._secrets[kind])
            answer = await self._send(api.GETTOKEN, request, token=None)
            return self._result(api.GETTOKEN, answer)

        return fetch

    async def _send(
        self, endpoint: api.Endpoint[Any, Any], request: api.WeComRequest, token: str | None
    ) -> dict[str, Any]:
        url = f"{self.api_base}/{endpoint.path}"
        params: dict[str, Any] = {} if token is None else {"access_token": token}
        await self._bucket.acquire()
        try:
            if endpoint.method == "GET":
                response = await self._http.get(url, params={**params, **request.body()})
            else:
                response = await self._http.post(url, params=params, json=request.body())
        except httpx.TransportError as error:
            raise WeComUnavailable(
                f"WeCom {endpoint.path} unreachable: {type(error).__name__}: {error}"
            ) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise WeComUnavailable(f"WeCom {endpoint.path} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise WeComProtocolError(
                f"WeCom {endpoint.path} answered HTTP {response.status_code}: "
                f"check SOPFLOW_WECOM_API_BASE ({self.api_base})"
            )
        try:
            answer = response.json()
        except ValueError as error:
            raise WeComProtocolError(f"WeCom {endpoint.path} answered with non-JSON") from error
        if not isinstance(answer, dict):
            raise WeComProtocolError(f"WeCom {endpoint.path} answered with a non-object")
        return answer

    def _result(self, endpoint: api.Endpoint[Any, ResponseT], answer: dict[str, Any]) -> ResponseT:
        try:
            result = endpoint.response.model_validate(answer)
        except ValidationError as invalid:
            raise WeComProtocolError(
                f"WeCom {endpoint.path} answered an unexpected shape: "
                f"{invalid.error_count()} errors"
            ) from invalid
        if result.errcode == 0:
            for key in [k for k in self._rate_limited_in_a_row if k[0] == endpoint.path]:
                del self._rate_limited_in_a_row[key]
            return result
        error = WeComError(result.errcode, result.errmsg, endpoint.path)
        if error.kind is ErrorKind.ALREADY_DONE:
            return result
        if error.kind is ErrorKind.RATE_LIMITED:
            key = (endpoint.path, result.errcode)
            in_a_row = self._rate_limited_in_a_row.get(key, 0) + 1
            self._rate_limited_in_a_row[key] = in_a_row
            base = (
                self._concurrency_backoff
                if result.errcode == CONCURRENCY_LIMITED
                else self._rate_limit_backoff
            )
            backoff = min(base * 2 ** (in_a_row - 1), self._max_backoff)
            raise WeComRateLimited(result.errcode, result.errmsg, endpoint.path, backoff)
        raise error

    async def call(
        self, endpoint: api.Endpoint[RequestT, ResponseT], request: RequestT
    ) -> ResponseT:
        """Call `endpoint`; on a token error refresh the token once and retry once."""
        if endpoint.token == "none":
            return self._result(endpoint, await self._send(endpoint, request, token=None))
        cache = self._tokens[endpoint.token]
        token = await cache.get()
        answer = await self._send(endpoint, request, token)
        code = answer.get("errcode", 0)
        if isinstance(code, int) and classify(code, endpoint.path) is ErrorKind.TOKEN:
            token = await cache.get(stale=token)
            answer = await self._send(endpoint, request, token)
        return self._result(endpoint, answer)

    # -- mass sends (staff confirm) --------------------------------------------------------

    async def add_msg_template(
        self, request: api.AddMsgTemplateRequest
    ) -> api.AddMsgTemplateResponse:
        return await self.call(api.ADD_MSG_TEMPLATE, request)

    async def groupmsg_list(
        self,
        creator: str,
        start_time: int,
        end_time: int,
        chat_type: Literal["single", "group"] = "single",
    ) -> list[api.GroupMsg]:
        """Every mass send of the chat type `creator` made between the two times (all pages)."""
        found: list[api.GroupMsg] = []
        cursor: str | None = None
        while True:
            request = api.GetGroupMsgListRequest(
                chat_type=chat_type,
                start_time=start_time,
                end_time=end_time,
                creator=creator,
                cursor=cursor,
            )
            page = await self.call(api.GET_GROUPMSG_LIST, request)
            found.extend(page.group_msg_list)
            if not page.next_cursor:
                return found
            cursor = page.next_cursor

    async def get_groupmsg_task(
        self, msgid: str, cursor: str | None = None, limit: int | None = None
    ) -> api.GetGroupMsgTaskResponse:
        request = api.GetGroupMsgTaskRequest(msgid=msgid, cursor=cursor, limit=limit)
        return await self.call(api.GET_GROUPMSG_TASK, request)

    async def get_groupmsg_send_result(
        self, msgid: str, userid: str, cursor: str | None = None, limit: int | None = None
    ) -> api.GetGroupMsgSendResultResponse:
        request = api.GetGroupMsgSendResultRequest(
            msgid=msgid, userid=userid, cursor=cursor, limit=limit
        )
        return await self.call(api.GET_GROUPMSG_SEND_RESULT, request)

    async def all_groupmsg_send_results(
        self, msgid: str, userid: str, limit: int = 1000
    ) -> list[api.GroupMsgSendResult]:
        """Every page of get_groupmsg_send_result for one sender."""
        results: list[api.GroupMsgSendResult] = []
        cursor: str | None = None
        while True:
            page = await self.get_groupmsg_send_result(msgid, userid, cursor, limit)
            results.extend(page.send_list)
            if not page.next_cursor:
                return results
            cursor = page.next_cursor

    async def remind_groupmsg_send(self, msgid: str) -> api.WeComResponse:
        return await self.call(api.REMIND_GROUPMSG_SEND, api.MsgIdRequest(msgid=msgid))

    async def cancel_groupmsg_send(self, msgid: str) -> api.WeComResponse:
        return await self.call(api.CANCEL_GROUPMSG_SEND, api.MsgIdRequest(msgid=msgid))

    # -- welcome ---------------------------------------------------------------------------

    async def send_welcome_msg(
        self, request: api.SendWelcomeMsgRequest
    ) -> api.SendWelcomeMsgResponse:
        """Send the welcome; a 41051 answer comes back as `already_sent`, not an error."""
        return await self.call(api.SEND_WELCOME_MSG, request)

    # -- tags ------------------------------------------------------------------------------

    async def get_corp_tag_list(
        self, tag_ids: list[str] | None = None, group_ids: list[str] | None = None
    ) -> api.GetCorpTagListResponse:
        request = api.GetCorpTagListRequest(tag_id=tag_ids, group_id=group_ids)
        return await self.call(api.GET_CORP_TAG_LIST, request)

    async def add_corp_tag(self, request: api.AddCorpTagRequest) -> api.AddCorpTagResponse:
        return await self.call(api.ADD_CORP_TAG, request)

    async def mark_tag(self, request: api.MarkTagRequest) -> api.WeComResponse:
        return await self.call(api.MARK_TAG, request)

    # -- staff messages --------------------------------------------------------------------

    async def message_send(self, request: api.MessageSendRequest) -> api.MessageSendResponse:
        return await self.call(api.MESSAGE_SEND, request)

    def _agent(self) -> int:
        if self.agent_id is None:
            raise WeComNotConfigured(
                "app messages to staff need SOPFLOW_WECOM_AGENT_ID (the app's AgentId)"
            )
        return self.agent_id

    async def send_text_to_staff(
        self, user_ids: list[str], content: str
    ) -> api.MessageSendResponse:
        request = api.MessageSendRequest(
            touser="|".join(user_ids),
            msgtype="text",
            agentid=self._agent(),
            text=api.Text(content=content),
        )
        return await self.message_send(request)

    async def send_textcard_to_staff(
        self, user_ids: list[str], card: api.TextCard
    ) -> api.MessageSendResponse:
        request = api.MessageSendRequest(
            touser="|".join(user_ids), msgtype="textcard", agentid=self._agent(), textcard=card
        )
        return await self.message_send(request)

    # -- moments ---------------------------------------------------------------------------

    async def add_moment_task(self, request: api.AddMomentTaskRequest) -> api.AddMomentTaskResponse:
        return await self.call(api.ADD_MOMENT_TASK, request)

    async def get_moment_task_result(self, jobid: str) -> api.GetMomentTaskResultResponse:
        request = api.GetMomentTaskResultRequest(jobid=jobid)
        return await self.call(api.GET_MOMENT_TASK_RESULT, request)

    async def moment_publishers(self, moment_id: str) -> dict[str, bool]:
        """Each staff member of a moment, and whether they published it (all pages)."""
        found: dict[str, bool] = {}
        cursor: str | None = None
        while True:
            request = api.GetMomentTaskRequest(moment_id=moment_id, cursor=cursor, limit=1000)
            page = await self.call(api.GET_MOMENT_TASK, request)
            for task in page.task_list:
                found[task.userid] = task.publish_status == api.MomentPublishStatus.PUBLISHED
            if not page.next_cursor:
                return found
            cursor = page.next_cursor

    async def cancel_moment_task(self, moment_id: str) -> api.WeComResponse:
        request = api.CancelMomentTaskRequest(moment_id=moment_id)
        return await self.call(api.CANCEL_MOMENT_TASK, request)

    # -- customers -------------------------------------------------------------------------

    async def follow_users(self, external_userid: str) -> list[api.FollowUser]:
        """The staff members who have the customer, each with the tags they put on them
        (every page of `externalcontact/get`)."""
        users: list[api.FollowUser] = []
        cursor: str | None = None
        while True:
            request = api.GetExternalContactRequest(external_userid=external_userid, cursor=cursor)
            answer = await self.call(api.GET_EXTERNAL_CONTACT, request)
            users += answer.follow_user
            if not answer.next_cursor:
                return users
            cursor = answer.next_cursor

    # -- customer groups -------------------------------------------------------------------

    async def get_group_chat(self, chat_id: str) -> api.GroupChat:
        """A customer group's owner, name and members."""
        answer = await self.call(api.GROUPCHAT_GET, api.GroupChatGetRequest(chat_id=chat_id))
        if answer.group_chat is None:
            raise WeComProtocolError(f"groupchat/get answered no group_chat for {chat_id}")
        return answer.group_chat
