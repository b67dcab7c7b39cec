"""How many reply streams are open: at most MAX_OPEN_STREAMS_PER_USER per user across every
web process, and MAX_OPEN_STREAMS_PER_PROCESS in this one. Past either, 429
`too_many_streams`.

A user's open streams are a sorted set in Redis: one member per stream, scored by when its
slot lapses. Opening is one script (drop the lapsed, count, add when under the cap); an open
stream renews its slot at every keep-alive interval and gives it back when it ends or its
client goes away. A process that dies without giving its slots back loses them on their own
`_LEASE_INTERVALS` keep-alive intervals later. A renewal also puts back a slot that Redis
lost (restarted empty, or the key expired) and pushes the key's expiry on, so a stream
stays counted for as long as it is open.

In the process, the open streams are the slots alive in a weak set: a slot leaves it when
it is given back, and also when its stream is dropped before it ever ran (the client left
between the slot's taking and the first byte), so the count cannot leak.

While Redis cannot be asked (down, or every one of the process's STREAM_REDIS_CONNECTIONS
busy for 5 s), a stream opens anyway (the per-process cap still bounds this
process; the stream itself then reports `stream_unavailable`): refusing it would turn a
cache outage into an outage of the stream, and the cap guards no secret.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from types import TracebackType

from django.conf import settings
from redis.exceptions import RedisError

from chatrooms.errors import StreamsTooMany
from chatrooms.stream_reader import answered_within, stream_reader

logger = logging.getLogger(__name__)

_LEASE_INTERVALS = 3

# KEYS: the user's slots. ARGV: now, this slot's lapse time, its member, the cap, the key's
# lifetime. Returns 1 when the slot was taken.
_TAKE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: the user's slots. ARGV: this slot's lapse time, its member, the key's lifetime.
_RENEW_LUA = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_process_lock = threading.Lock()
_process_slots: weakref.WeakSet[StreamSlot] = weakref.WeakSet()


def slots_key(user_id: int) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    base = f"{prefix}:streams" if prefix else "streams"
    return f"{base}:open:{user_id}"


def _lease_seconds() -> int:
    return settings.REPLY_STREAM_KEEPALIVE_SECONDS * _LEASE_INTERVALS


def process_streams_open() -> int:
    with _process_lock:
        return len(_process_slots)


class StreamSlot:
    """One open stream's place under both caps. `await slot.take()` raises StreamsTooMany;
    `async with` gives it back."""

    def __init__(self, *, user_id: int) -> None:
        self._key = slots_key(user_id)
        self._member = uuid.uuid4().hex
        self._renewed_at = 0.0
        self._given_back = False

    async def take(self) -> None:
        self._process_take()
        try:
            await self._user_take()
        except BaseException:
            self._process_give_back()
            raise

    async def renew_if_due(self) -> None:
        """Push the slot's lapse time and the key's expiry on, once per keep-alive interval."""
        now = time.time()
        if self._given_back or now - self._renewed_at < settings.REPLY_STREAM_KEEPALIVE_SECONDS:
            return
        self._renewed_at = now
        try:
            async with answered_within():
                await stream_reader().client.eval(
                    _RENEW_LUA,
                    1,
                    self._key,
                    now + _lease_seconds(),
                    self._member,
                    _lease_seconds() * 2,
                )
        except RedisError as exc:
            logger.warning("Could not renew a stream slot: %r", exc)

    async def give_back(self) -> None:
        self._given_back = True  # a renewal still on its way must not put the slot back
        self._process_give_back()
        try:
            async with answered_within():
                await stream_reader().client.zrem(self._key, self._member)
        except RedisError as exc:  # it lapses on its own
            logger.warning("Could not give a stream slot back: %r", exc)

    async def __aenter__(self) -> StreamSlot:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.give_back()

    def _process_take(self) -> None:
        with _process_lock:
            if len(_process_slots) >= settings.MAX_OPEN_STREAMS_PER_PROCESS:
                raise StreamsTooMany(
                    limit=settings.MAX_OPEN_STREAMS_PER_PROCESS,
                    retry_after=settings.REPLY_STREAM_KEEPALIVE_SECONDS,
                )
            _process_slots.add(self)

    def _process_give_back(self) -> None:
        with _process_lock:
            _process_slots.discard(self)

    async def _user_take(self) -> None:
        now = time.time()
        try:
            async with answered_within():
                taken = await stream_reader().client.eval(
                    _TAKE_LUA,
                    1,
                    self._key,
                    now,
                    now + _lease_seconds(),
                    self._member,
                    settings.MAX_OPEN_STREAMS_PER_USER,
                    _lease_seconds() * 2,
                )
        except RedisError as exc:
            logger.warning("Stream slots unavailable, opening anyway: %r", exc)
            return
        if not taken:
            raise StreamsTooMany(
                limit=settings.MAX_OPEN_STREAMS_PER_USER,
                retry_after=settings.REPLY_STREAM_KEEPALIVE_SECONDS,
            )
        self._renewed_at = now
