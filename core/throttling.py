"""The per-user request throttle of the authenticated API: API_RATE_PER_MINUTE a minute.

Each user has one counter per clock minute in Redis, bumped in one round trip (a script that
increments it and, the first time, sets its expiry). Past the rate, DRF answers 429
`rate_limited` with Retry-After: the seconds left in that minute. A fixed window lets a
client spend up to twice the rate across the edge of a minute; for a generous fairness limit
that is worth its price, one small key and one round trip, where DRF's own throttles read
and write a list of timestamps (two round trips, up to API_RATE_PER_MINUTE entries, and
concurrent requests lose counts).

It fails open: while Redis does not answer, requests go through. This throttle keeps one
user from crowding out the others and guards no secret; the limits that protect something
(wrong passwords, OTP sends, daily prompts) live in PostgreSQL. Refusing every request
because a cache is down would turn a Redis outage into an API outage.

Requests without a user (the public endpoints, which have limits of their own, and the
Stripe webhook) are not counted.

Authentication reads the user's cached row from Redis anyway, so it counts the request in
that same round trip (`request_count_with`) and leaves the answer on the request
(`request_counted`); the throttle then only reads it (`request_wait`). A request that
authentication did not count (one authenticated another way, as tests force it) is counted
by the throttle. Since the count comes first, a refused token (a revoked one, say) counts
against its user's budget too: the price of one round trip instead of two.

A request the event loop counted and then handed to Django (`gemini_clone.loop_answers`)
carries that in its environ (`COUNTED_ENVIRON_KEY`): Django's round trip then reads the
count without adding to it. Only a Redis that fails after counting (a timeout once the
script ran) can still count a request twice: an over-count, never an under-count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.http import HttpRequest
from django_redis import get_redis_connection
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from core.redis_async import cache_redis_scripts
from core.redis_prefetch import RedisRead
from core.redis_scripts import script_run

if TYPE_CHECKING:  # rest_framework.views loads this module through its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def _key(*, user_id: int, window: int) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:throttle:{user_id}:{window}" if prefix else f"throttle:{user_id}:{window}"


# KEYS[1]: the window's counter, ARGV[1] its lifetime; then the other keys to read, each a
# GET (its ARGV field '') or an HGET of its field, answered in the same reply. One command
# and one reply: measured 24 µs of client CPU for the count alone, against 39 µs for INCR
# and EXPIRE in a MULTI, and less than a pipeline for the reads (`core.redis_scripts`).
# ARGV[#KEYS + 1]: 1, or 0 for a request counted already (its count is read, not bumped).
_COUNT_AND_READ = b"""
local increment = tonumber(ARGV[#KEYS + 1])
local count = redis.call('INCRBY', KEYS[1], increment)
if count == increment then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local reply = {count}
for i = 2, #KEYS do
  if ARGV[i] == '' then reply[i] = redis.call('GET', KEYS[i])
  else reply[i] = redis.call('HGET', KEYS[i], ARGV[i]) end
end
return reply
"""


def _count_request(
    *, user_id: int, window: int, also_read: Sequence[RedisRead], increment: int
) -> tuple[int, list[Any]]:
    """This user's requests in this window, this one included (counted by `increment`, 1
    or 0); and the raw values of `also_read`, read in the same round trip."""
    client = get_redis_connection("default")
    key = _key(user_id=user_id, window=window)
    if any(read.field == "" for read in also_read):
        raise ValueError("An empty hash field cannot be read here (it means a GET).")
    count, *values = script_run(
        client,
        _COUNT_AND_READ,
        [key, *(read.key for read in also_read)],
        WINDOW_SECONDS * 2,
        *(read.field or "" for read in also_read),
        increment,
    )
    return int(count), values


@dataclass(frozen=True)
class Counted:
    wait: float | None  # None while within API_RATE_PER_MINUTE (or while Redis cannot say)
    # The raw values of `also_read`, in order (None where missing); empty when Redis failed.
    values: list[Any] = field(default_factory=list)


def request_count_with(
    *, user_id: int, also_read: Sequence[RedisRead] = (), counted_already: bool = False
) -> Counted:
    """Counts a request of this user (unless `counted_already`: then only reads the count)
    and, in the same round trip, makes the reads `also_read`."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    try:
        count, values = _count_request(
            user_id=user_id,
            window=window,
            also_read=also_read,
            increment=0 if counted_already else 1,
        )
    except RedisError as exc:
        logger.warning("Request throttle skipped, Redis unavailable: %r", exc)
        return Counted(wait=None)
    if count <= settings.API_RATE_PER_MINUTE:
        return Counted(wait=None, values=values)
    return Counted(wait=(window + 1) * WINDOW_SECONDS - now, values=values)


def request_wait_seconds(*, user_id: int) -> float | None:
    """Counts a request of this user: None while within API_RATE_PER_MINUTE (or while Redis
    cannot say), else the seconds until the minute ends."""
    return request_count_with(user_id=user_id).wait


# KEYS[1]: the window's counter; then the keys to read, as in _COUNT_AND_READ (ARGV[2 + i]
# the field of KEYS[1 + i]). The request is counted only when every read finds a value, and
# none equal to ARGV[2]; else nothing is counted and the reply is nil.
_COUNT_IF_ALL_FOUND = b"""
local reply = {0}
for i = 2, #KEYS do
  local value
  if ARGV[i + 1] == '' then value = redis.call('GET', KEYS[i])
  else value = redis.call('HGET', KEYS[i], ARGV[i + 1]) end
  if not value or value == ARGV[2] then return false end
  reply[i] = value
end
reply[1] = redis.call('INCR', KEYS[1])
if reply[1] == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return reply
"""


async def request_count_if_all_found(
    *, user_id: int, reads: Sequence[RedisRead], not_found: bytes
) -> Counted | None:
    """For a request the event loop answers itself when its reads all find something: makes
    `reads` and, only when each found a value other than `not_found`, counts the request,
    in one round trip. None when one did not (nothing counted). Raises RedisError."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    if any(read.field == "" for read in reads):
        raise ValueError("An empty hash field cannot be read here (it means a GET).")
    reply = await cache_redis_scripts().run(
        _COUNT_IF_ALL_FOUND,
        [_key(user_id=user_id, window=window), *(read.key for read in reads)],
        WINDOW_SECONDS * 2,
        not_found,
        *(read.field or "" for read in reads),
    )
    if reply is None:
        return None
    count, *values = reply
    wait = None if count <= settings.API_RATE_PER_MINUTE else (window + 1) * WINDOW_SECONDS - now
    return Counted(wait=wait, values=values)


# The environ entry of a request the event loop counted before handing it to Django: the id
# of the user it was counted for (set by the server's code, never by a client's header).
COUNTED_ENVIRON_KEY = "gemini_clone.throttle_counted_for"


def request_counted_earlier(request: HttpRequest, *, user_id: int) -> bool:
    """Whether the event loop counted this request for this user already."""
    return request.META.get(COUNTED_ENVIRON_KEY) == user_id


_COUNTED_ATTR = "throttle_counted_wait"
_UNCOUNTED = object()


def request_counted(request: HttpRequest, wait: float | None) -> None:
    """Authentication counted this request already: its wait, for `request_wait`."""
    setattr(request, _COUNTED_ATTR, wait)


def request_wait(request: HttpRequest, *, user_id: int) -> float | None:
    """This request's wait: as authentication counted it, or counted now."""
    counted = getattr(request, _COUNTED_ATTR, _UNCOUNTED)
    if counted is _UNCOUNTED:
        return request_wait_seconds(user_id=user_id)
    return cast(float | None, counted)


def request_counts_forget(*, user_id: int) -> None:
    """Drop a deleted user's request counts (this window and the last); best effort: they
    end with their window anyway."""
    window = int(time.time() // WINDOW_SECONDS)
    try:
        get_redis_connection("default").delete(
            *(_key(user_id=user_id, window=w) for w in (window - 1, window))
        )
    except RedisError as exc:
        logger.warning("Request counts not deleted, Redis unavailable: %r", exc)


class UserRequestThrottle(BaseThrottle):
    """The throttle of every DRF view (DEFAULT_THROTTLE_CLASSES); DRF makes one per request."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        user_id = getattr(request.user, "pk", None)
        if user_id is None:
            return True
        self._wait = request_wait(request._request, user_id=user_id)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
