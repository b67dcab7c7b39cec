"""Redis reads that ride on authentication's round trip.

Authentication asks Redis for the user's cached row on every request anyway (with the
request's throttle count, `core.throttling`). A view that will read Redis itself can name
its reads in advance, by the token's user id, and get them from that same round trip
instead of one of its own: the cached chatroom list does (one Redis round trip per hit, not
two; the round trip was a fifth of the list's CPU).

A view opts in with a method `redis_reads_with_auth(request, user_id) -> list[RedisRead]`.
It runs inside authentication, before the user is known: it must not touch `request.user`
or `request.auth` (that would authenticate again). What it raises is dropped (no reads),
so a request it cannot read is still counted before its view refuses it. What came back is
left on the request; the view takes it with `prefetched_values`. A value is only used by
the request whose authentication read it, and only after that authentication succeeded: a
refused token never reaches the view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

_ATTRIBUTE = "redis_prefetched"


@dataclass(frozen=True)
class RedisRead:
    """A GET of `key`, or an HGET of `field` in the hash at `key`."""

    key: str
    field: str | None = None


def prefetch_reads_of_view(view: Any, request: Any, user_id: int) -> list[RedisRead]:
    """The reads `view` wants made with authentication's, for the user `user_id`; none when
    the view cannot say (a query Django refuses to parse, say): the view meets the same
    error itself, after the request was counted."""
    reads_with_auth = getattr(view, "redis_reads_with_auth", None)
    if reads_with_auth is None:
        return []
    try:
        return list(reads_with_auth(request, user_id))
    except Exception:
        return []


def prefetched_keep(
    request: HttpRequest, reads: Sequence[RedisRead], values: Sequence[Any]
) -> None:
    """Leave the values of `reads` on the request, for its view (authentication succeeded)."""
    setattr(request, _ATTRIBUTE, dict(zip(reads, values, strict=True)))


def prefetched_values(request: HttpRequest) -> Mapping[RedisRead, Any]:
    """What this request's authentication read for it (raw values, None where missing);
    empty when it read nothing (Redis failed, or another authentication ran)."""
    values: Mapping[RedisRead, Any] = getattr(request, _ATTRIBUTE, {})
    return values
