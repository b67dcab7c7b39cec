"""Per-user Redis cache of the chatroom list: ready response bodies, one round trip per hit.

Keys (with the cache's KEY_PREFIX and a `{user_id}` hash tag, so both live on one node):

- `<prefix>:chatrooms:list:{<user_id>}`: a hash; field = normalised query, value = the JSON
  body of that page, exactly as sent to the client.
- `<prefix>:chatrooms:epoch:{<user_id>}`: a counter that every invalidation bumps.

A read fetches the page and the epoch together. A miss stores its page only if the epoch is
still the one it read before querying the database, so a page built from rows older than an
invalidation can never be stored after that invalidation. The hash expires
CHATROOM_LIST_CACHE_TTL seconds after its first page was stored, so no page outlives the TTL.

One user's hash is bounded whatever the query strings (limit, cursor, the Host the `next`
links are built on): at most CHATROOM_LIST_CACHE_MAX_PAGES pages and
CHATROOM_LIST_CACHE_MAX_BYTES bytes of fields and bodies. A page that does not fit is served
but not stored; the hash empties at the next invalidation or when its TTL ends.

Redis being down is never an error: reads become misses and stores are skipped. A failed
invalidation is remembered by this process and retried before its next read, so a page it
missed does not outlive the outage here; other processes may serve it until the TTL ends.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django_redis import get_redis_connection
from redis import Redis
from redis.exceptions import RedisError

from core.redis_prefetch import RedisRead
from core.redis_scripts import script_run

logger = logging.getLogger(__name__)

# Far longer than any request, so an epoch never resets under a miss that is still running.
EPOCH_TTL_SECONDS = 24 * 3600

# Failed invalidations waiting for Redis to come back (bounded: past it, the TTL has to do).
_PENDING_MAX = 10_000
# User id -> the number of its latest failed invalidation. An id leaves only once an
# invalidation that began after that failure succeeded: while a retry is on its way, the
# id still holds back this process's reads of that user's pages.
_pending: dict[int, int] = {}
_pending_lock = threading.Lock()
_failures = itertools.count(1)

# KEYS: page hash, epoch. ARGV: epoch read before the query, field, body, ttl, max pages,
# max bytes. Returns 1 if stored, 0 if the epoch moved on, -1 if the page does not fit.
# (TTL check rather than `EXPIRE ... NX`, which Redis 6 lacks.)
_STORE_IF_CURRENT = """
local epoch = redis.call('GET', KEYS[2]) or '0'
if epoch ~= ARGV[1] then return 0 end
local others = 0
local bytes = #ARGV[2] + #ARGV[3]
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if field ~= ARGV[2] then
    others = others + 1
    bytes = bytes + #field + redis.call('HSTRLEN', KEYS[1], field)
  end
end
if others >= tonumber(ARGV[5]) or bytes > tonumber(ARGV[6]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


# KEYS: the user's pages, their epoch. ARGV: the page's field. Both values (nil when
# missing) in one command.
_READ = b"return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2])}"


@dataclass(frozen=True)
class CacheRead:
    """A page body on a hit; on a miss, the epoch to hand back to `list_cache_store`."""

    body: bytes | None
    epoch: str | None  # None when Redis could not be read: do not try to store


def _keys(user_id: int) -> tuple[str, str]:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    base = f"{prefix}:chatrooms" if prefix else "chatrooms"
    return f"{base}:list:{{{user_id}}}", f"{base}:epoch:{{{user_id}}}"


def _redis() -> Redis:
    return get_redis_connection("default")


def _page_reads(*, user_id: int, field: str) -> tuple[RedisRead, RedisRead]:
    """What a read of the page `field` reads: the page, and the user's epoch."""
    pages_key, epoch_key = _keys(user_id)
    return RedisRead(pages_key, field), RedisRead(epoch_key)


def list_cache_reads_ahead(*, user_id: int, field: str) -> list[RedisRead]:
    """The reads a caller may make ahead, in a round trip of its own, and hand to
    `list_cache_read`; none while this process has invalidations to retry (what it would
    read then could be older than one of them, and another thread may retry it before the
    page is served)."""
    return [] if _pending else list(_page_reads(user_id=user_id, field=field))


def list_cache_pending() -> bool:
    """Whether this process has invalidations to retry: until they succeed, a page read from
    Redis may be older than one of them."""
    return bool(_pending)


def list_cache_page_read(*, user_id: int, field: str) -> RedisRead | None:
    """The read of the page alone, for a caller that serves it only if it is there (a hit
    needs no epoch); None while this process has invalidations to retry."""
    return None if _pending else _page_reads(user_id=user_id, field=field)[0]


def list_cache_read(
    *, user_id: int, field: str, prefetched: Mapping[RedisRead, Any] | None = None
) -> CacheRead:
    """The page `field`, with its epoch; from `prefetched` when both were read there."""
    pages, epoch_read = _page_reads(user_id=user_id, field=field)
    if _pending:
        # Read before this process's invalidation was retried: not to be trusted.
        prefetched = None
        if not _retry_pending_invalidations():
            return CacheRead(body=None, epoch=None)
    if prefetched is not None and pages in prefetched and epoch_read in prefetched:
        body, epoch = prefetched[pages], prefetched[epoch_read]
    else:
        try:
            body, epoch = script_run(_redis(), _READ, [pages.key, epoch_read.key], field)
        except RedisError as exc:
            logger.warning("Chatroom list cache unavailable, reading the database: %r", exc)
            return CacheRead(body=None, epoch=None)
    return CacheRead(body=body, epoch=epoch.decode() if epoch is not None else "0")


def list_cache_store(*, user_id: int, field: str, body: bytes, epoch: str) -> bool:
    """Store a page unless an invalidation happened since `epoch` was read, or the user's
    pages would pass their bounds. True if stored."""
    pages_key, epoch_key = _keys(user_id)
    try:
        client = _redis()
        stored = client.register_script(_STORE_IF_CURRENT)(
            keys=[pages_key, epoch_key],
            args=[
                epoch,
                field,
                body,
                settings.CHATROOM_LIST_CACHE_TTL,
                settings.CHATROOM_LIST_CACHE_MAX_PAGES,
                settings.CHATROOM_LIST_CACHE_MAX_BYTES,
            ],
            client=client,
        )
    except RedisError as exc:
        logger.warning("Chatroom list cache not stored: %r", exc)
        return False
    return stored == 1


def list_cache_invalidate(*, user_id: int) -> None:
    try:
        _invalidate([user_id])
    except RedisError as exc:
        logger.warning("Chatroom list cache of user %s not invalidated: %r", user_id, exc)
        with _pending_lock:
            if len(_pending) < _PENDING_MAX or user_id in _pending:
                _pending[user_id] = next(_failures)


def _invalidate(user_ids: list[int]) -> None:
    pipe = _redis().pipeline(transaction=True)
    for user_id in user_ids:
        pages_key, epoch_key = _keys(user_id)
        pipe.incr(epoch_key)
        pipe.expire(epoch_key, EPOCH_TTL_SECONDS)
        pipe.delete(pages_key)
    pipe.execute()


def _retry_pending_invalidations() -> bool:
    """Invalidate what failed earlier. False while Redis is still unreachable."""
    with _pending_lock:
        waiting = dict(_pending)
    if not waiting:
        return True
    try:
        _invalidate(list(waiting))
    except RedisError:
        return False
    with _pending_lock:
        for user_id, failure in waiting.items():
            if _pending.get(user_id) == failure:  # no newer failure meanwhile
                del _pending[user_id]
    return True


def list_cache_delete(*, user_id: int) -> None:
    """Delete a deleted user's cached pages and epoch; best effort (the pages expire)."""
    try:
        _redis().delete(*_keys(user_id))
    except RedisError as exc:
        logger.warning("Chatroom list cache of user %s not deleted: %r", user_id, exc)


def list_cache_invalidate_on_commit(*, user_id: int) -> None:
    """Invalidate once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(partial(list_cache_invalidate, user_id=user_id))
