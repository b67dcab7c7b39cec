"""What every open reply stream of a web process shares: one bounded Redis pool, and one
reader that waits for all of them at once.

A stream waits for new events most of its life. Waiting with its own blocking XREAD would
hold a Redis connection per open stream; instead one task per event loop sends a single
`XREAD BLOCK` naming every followed stream, and hands what comes back to each follower's
queue. A web process then holds at most STREAM_REDIS_CONNECTIONS connections for its
streams, however many are open: the reader's own, and a pool of the rest where the short
calls (a late joiner's backlog, the open-stream slots) take turns, so a crowd of them can
never keep the reader waiting.

When a read fails, every stream followed at that moment ends with `stream_unavailable`
(the reader's next call starts afresh with the streams that come after).

A stream that joins while the reader waits is included in its next call, at most
`_BLOCK_SECONDS` later. Nothing is missed meanwhile: each follower reads from the id after
its backlog, not from "now".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from core.cancellation import raise_if_cancellation_lost

logger = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]

CLIENT_NAME = "gc-streams"
_BLOCK_SECONDS = 0.25
_READ_BATCH = 500
_CONNECT_TIMEOUT_SECONDS = 2
_ANSWER_SECONDS = 5


def _entry_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class Follow:
    """One client's place in one stream: the last entry it got, and what has come since."""

    def __init__(self, key: str, last_id: str) -> None:
        self.key = key
        self.last_id = last_id
        self._batches: asyncio.Queue[list[Entry]] = asyncio.Queue()
        self._error: RedisError | None = None

    def deliver(self, entries: list[Entry]) -> None:
        last = _entry_id(self.last_id)
        new = [entry for entry in entries if _entry_id(entry[0]) > last]
        if new:
            self.last_id = new[-1][0]
            self._batches.put_nowait(new)

    def fail(self, error: RedisError) -> None:
        self._error = error
        self._batches.put_nowait([])

    async def wait(self, *, seconds: float) -> list[Entry]:
        """The entries that came since the last call, waiting up to `seconds` for some."""
        # Not `asyncio.wait_for`, which can lose the cancellation of a client that left as
        # the batch arrives (`core.cancellation`). Cancelled here, the batch stays queued.
        try:
            async with asyncio.timeout(seconds):
                entries = await self._batches.get()
        except TimeoutError:
            return []
        while not self._batches.empty():
            entries += self._batches.get_nowait()
        if self._error is not None:
            raise self._error
        return entries


@contextlib.asynccontextmanager
async def answered_within(seconds: float | None = None) -> AsyncIterator[None]:
    """The bound of a call on the stream clients, whose connections have no socket timeout:
    with one, redis-py sends under `asyncio.wait_for`, which can lose a cancellation
    (`core.cancellation`). Past it the call is cancelled (redis-py then drops its
    connection) and RedisTimeoutError raised, a RedisError like Redis's own failures."""
    bound = _ANSWER_SECONDS if seconds is None else seconds
    try:
        async with asyncio.timeout(bound):
            yield
    except TimeoutError as exc:
        raise RedisTimeoutError(
            f"no answer from Redis within {bound} s (a wait for a free connection included)"
        ) from exc


def _client(*, connections: int, **options: Any) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=connections,
        **options,
        timeout=_ANSWER_SECONDS,  # the longest wait for a free connection
        decode_responses=True,
        socket_connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        client_name=CLIENT_NAME,
        # Off: during a maintenance event (RESP3) they would set a socket timeout again.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    # None, not left out (redis-py's default is 5 s), and after from_url, where one in the
    # URL's query would win; the original too, which maintenance notifications restore.
    pool.connection_kwargs.update(socket_timeout=None, orig_socket_timeout=None)
    return aioredis.Redis(connection_pool=pool)


class StreamReader:
    """The process's streams on one event loop: the shared client, and the reading task."""

    def __init__(self) -> None:
        self.client = _client(connections=max(settings.STREAM_REDIS_CONNECTIONS - 1, 1))
        # Its one connection is stale after a Redis restart: a read that fails to connect is
        # tried once more on a new one before the streams are told (reading twice is safe).
        self._reading_client = _client(
            connections=1, retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        )
        self._follows: dict[str, set[Follow]] = {}
        self._task: asyncio.Task[None] | None = None

    def follow(self, *, key: str, after_id: str) -> Follow:
        follow = Follow(key, after_id)
        self._follows.setdefault(key, set()).add(follow)
        if self._task is None or self._task.done():
            # A context of its own: the task outlives the request that happened to start it.
            self._task = asyncio.get_running_loop().create_task(
                self._read(), context=contextvars.Context()
            )
        return follow

    def unfollow(self, follow: Follow) -> None:
        followers = self._follows.get(follow.key)
        if followers is not None:
            followers.discard(follow)
            if not followers:
                del self._follows[follow.key]

    async def _read(self) -> None:
        while self._follows:
            raise_if_cancellation_lost()  # its event loop's shutdown waits for it
            after = {
                key: min((follow.last_id for follow in followers), key=_entry_id)
                for key, followers in self._follows.items()
            }
            try:
                async with answered_within(_BLOCK_SECONDS + _ANSWER_SECONDS):
                    response = await self._reading_client.xread(
                        after,  # type: ignore[arg-type]  # redis-py types the ids too narrowly
                        count=_READ_BATCH,
                        block=int(_BLOCK_SECONDS * 1000),
                    )
            except Exception as exc:
                if isinstance(exc, RedisError):
                    logger.warning("The reply stream reader lost Redis: %r", exc)
                else:
                    logger.exception("The reply stream reader failed")
                self._fail_all(exc if isinstance(exc, RedisError) else RedisError(repr(exc)))
                return
            for key, entries in cast(list[tuple[str, list[Entry]]], response or []):
                read_after = _entry_id(after[key])
                for follow in list(self._follows.get(key, ())):
                    # A follow that joined during the call, further back than it read, gets
                    # these on the next call, from where it is: none may be skipped.
                    if _entry_id(follow.last_id) >= read_after:
                        follow.deliver(entries)

    def _fail_all(self, error: RedisError) -> None:
        """Every stream followed now, those that joined during the failed call included."""
        follows, self._follows = self._follows, {}
        for followers in follows.values():
            for follow in followers:
                follow.fail(error)


_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamReader] = (
    weakref.WeakKeyDictionary()
)


def stream_reader() -> StreamReader:
    """The reader of the running event loop (uvicorn runs one per process; tests may run
    several, and an asyncio connection belongs to the loop that opened it)."""
    loop = asyncio.get_running_loop()
    reader = _readers.get(loop)
    if reader is None:
        reader = _readers[loop] = StreamReader()
    return reader
