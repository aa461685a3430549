"""Group commit for the event path: concurrent requests share one database round trip.

One event per HTTP request (what WeCom callbacks send) paid a thread hop and a transaction
for each ledger write: claiming its idempotency key, then marking it sent. A `Coalescer`
runs a blocking function for every caller waiting at that moment: callers that arrive
while a call is in flight are served together by the next one. Nothing waits for a timer,
so a lone request is as fast as before, and a burst of requests costs a few round trips
instead of one each (bench/latency.py).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Callers served by one call at most: bounds a transaction's size (and its statement's
# parameters) under any load.
MAX_COALESCED = 200


class Coalescer(Generic[T, R]):
    """`await coalescer(item)` gives `run([... item ...])`'s result for that item, where
    `run` (blocking, run in a thread) takes the items of every caller waiting at once and
    returns one result per item, in order. If a shared call fails, each of its items is run
    again alone, so that one bad item fails only its own caller."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]]) -> None:
        self._run = run
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._draining = False

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_COALESCED]
                del self._pending[:MAX_COALESCED]
                await self._serve(batch)
        finally:
            self._draining = False

    async def _serve(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await asyncio.to_thread(self._run, [item for item, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
                return
            for one in batch:  # alone, each gets its own result or its own error
                await self._serve([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(
    future: asyncio.Future[R], result: R | None = None, error: BaseException | None = None
) -> None:
    if future.done():  # its request went away (the client disconnected)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


Owner = TypeVar("Owner")
_SHARED: dict[tuple[int, str], Any] = {}


def shared(owner: Owner, name: str, make: Callable[[Callable[[], Owner]], T]) -> T:
    """The `name` object of `owner` (a database): made once by `make`, which gets the
    owner by weak reference (an app's coalescers must not keep its engine alive), and
    dropped with the owner."""
    key = (id(owner), name)
    found = _SHARED.get(key)
    if found is None:
        ref = weakref.ref(owner)

        def get() -> Owner:
            alive = ref()
            if alive is None:
                raise RuntimeError(f"the owner of '{name}' is gone")
            return alive

        found = _SHARED[key] = make(get)
        weakref.finalize(owner, _SHARED.pop, key, None)
    return found
