"""Reads of chatrooms and messages, always scoped to their owner."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.models import User
from chatrooms import cache
from chatrooms.cursors import list_cursor_encode
from chatrooms.errors import ChatroomNotFound, MessageNotFound
from chatrooms.models import Chatroom, Message
from chatrooms.payloads import chatroom_payload
from core.redis_prefetch import RedisRead

DETAIL_MESSAGES = 50


@dataclass(frozen=True)
class ChatroomListPage:
    body: bytes
    cache_hit: bool


@dataclass(frozen=True)
class ChatroomDetail:
    chatroom: Chatroom
    messages: list[Message]  # oldest first
    has_more_messages: bool


@dataclass(frozen=True)
class MessagePage:
    messages: list[Message]  # oldest first
    has_more: bool


def render_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, the same bytes DRF's JSONRenderer would send."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def chatroom_get(*, user: User, chatroom_id: int) -> Chatroom:
    chatroom = Chatroom.objects.filter(pk=chatroom_id, user=user).first()
    if chatroom is None:
        raise ChatroomNotFound()
    return chatroom


def _list_page_field(*, before_id: int | None, limit: int, list_url: str) -> str:
    return f"{list_url}|{before_id or ''}|{limit}"


def chatroom_list_page_reads(
    *, user_id: int, before_id: int | None, limit: int, list_url: str
) -> list[RedisRead]:
    """The Redis reads of `chatroom_list_page` with these arguments, for a caller that makes
    them in a round trip of its own (authentication's: `core.redis_prefetch`)."""
    field = _list_page_field(before_id=before_id, limit=limit, list_url=list_url)
    return cache.list_cache_reads_ahead(user_id=user_id, field=field)


def chatroom_list_page_cached_read(
    *, user_id: int, before_id: int | None, limit: int, list_url: str
) -> RedisRead | None:
    """The Redis read of that page's cached body, whose value, when there is one, is the
    body `chatroom_list_page` would serve; None when the cache is not to be read now."""
    field = _list_page_field(before_id=before_id, limit=limit, list_url=list_url)
    return cache.list_cache_page_read(user_id=user_id, field=field)


def chatroom_list_page(
    *,
    user_id: int,
    before_id: int | None,
    limit: int,
    list_url: str,
    prefetched: Mapping[RedisRead, Any] | None = None,
) -> ChatroomListPage:
    """One page of the user's chatrooms, newest first, served from the cache when possible
    (`prefetched`: what `chatroom_list_page_reads` read already, if anything).

    `list_url` (absolute, no query) is the base of the `next` link, hence part of the key.
    """
    field = _list_page_field(before_id=before_id, limit=limit, list_url=list_url)
    cached = cache.list_cache_read(user_id=user_id, field=field, prefetched=prefetched)
    if cached.body is not None:
        return ChatroomListPage(body=cached.body, cache_hit=True)

    rows = Chatroom.objects.filter(user_id=user_id).order_by("-id")
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    chatrooms = list(rows[: limit + 1])
    more = len(chatrooms) > limit
    chatrooms = chatrooms[:limit]
    next_url = None
    if more:
        cursor = list_cursor_encode(user_id=user_id, before_id=chatrooms[-1].pk)
        next_url = f"{list_url}?cursor={cursor}&limit={limit}"
    body = render_json(
        {"results": [chatroom_payload(chatroom) for chatroom in chatrooms], "next": next_url}
    )
    if cached.epoch is not None:
        cache.list_cache_store(user_id=user_id, field=field, body=body, epoch=cached.epoch)
    return ChatroomListPage(body=body, cache_hit=False)


def chatroom_detail(*, user: User, chatroom_id: int) -> ChatroomDetail:
    chatroom = chatroom_get(user=user, chatroom_id=chatroom_id)
    newest = list(chatroom.messages.order_by("-id")[: DETAIL_MESSAGES + 1])
    return ChatroomDetail(
        chatroom=chatroom,
        messages=newest[:DETAIL_MESSAGES][::-1],
        has_more_messages=len(newest) > DETAIL_MESSAGES,
    )


def message_history(
    *, user: User, chatroom_id: int, before_id: int | None, limit: int
) -> MessagePage:
    """The `limit` messages before `before_id` (or the newest), returned oldest first."""
    chatroom = chatroom_get(user=user, chatroom_id=chatroom_id)
    rows = chatroom.messages.order_by("-id")
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    newest = list(rows[: limit + 1])
    return MessagePage(messages=newest[:limit][::-1], has_more=len(newest) > limit)


def user_messages(*, user: User, chatroom_id: int) -> QuerySet[Message]:
    """The messages of a chatroom, if the chatroom is the user's: the one owner-scoped
    lookup every message endpoint starts from."""
    return Message.objects.filter(chatroom_id=chatroom_id, chatroom__user=user)


def message_get(*, user: User, chatroom_id: int, message_id: int) -> Message:
    message = user_messages(user=user, chatroom_id=chatroom_id).filter(pk=message_id).first()
    if message is None:
        raise MessageNotFound()
    return message


async def message_aget(*, user: User, chatroom_id: int, message_id: int) -> Message:
    message = await user_messages(user=user, chatroom_id=chatroom_id).filter(pk=message_id).afirst()
    if message is None:
        raise MessageNotFound()
    return message


_LATEST_REPLY_SQL = f"""
    SELECT id, status FROM {Message._meta.db_table}
    WHERE chatroom_id = %s AND role = %s ORDER BY id DESC LIMIT 1
"""  # noqa: S608 (the table name is ours, the values are parameters)

# The same reply, found only when it is in flight (the same parameters): a send's INSERT
# runs it as its guard (chatrooms.services.message_send).
LATEST_REPLY_IN_FLIGHT_SQL = f"""
    SELECT FROM ({_LATEST_REPLY_SQL}) latest
    WHERE status IN ({", ".join(f"'{status.value}'" for status in Message.IN_FLIGHT)})
"""


def chatroom_latest_reply_status(*, chatroom_id: int) -> tuple[int, str] | None:
    """Id and status of the chatroom's newest model reply, if it has one. Plain SQL: it is
    on the send path (see core/sql.py)."""
    with connection.cursor() as cursor:
        cursor.execute(_LATEST_REPLY_SQL, [chatroom_id, Message.Role.MODEL.value])
        row = cursor.fetchone()
    return (row[0], row[1]) if row is not None else None


def chatroom_count_subquery(user_ref: str = "pk") -> Coalesce:
    """How many chatrooms the user whose id is `user_ref` has: an annotation."""
    counted = (
        Chatroom.objects.filter(user_id=OuterRef(user_ref))
        .order_by()
        .values("user_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted), Value(0))


def chatroom_first_user_message(*, chatroom_id: int) -> str | None:
    return (
        Message.objects.filter(chatroom_id=chatroom_id, role=Message.Role.USER)
        .order_by("id")
        .values_list("content", flat=True)
        .first()
    )
