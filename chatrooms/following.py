"""Following one reply for one client (the SSE endpoint): Redis for the live events, the
database for where a reply stands when Redis is silent or has forgotten it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from chatrooms import streaming
from chatrooms.models import Message
from chatrooms.payloads import message_payload
from chatrooms.replies import lease_live, reply_settle_if_abandoned
from core.cancellation import raise_if_cancellation_lost
from core.db import db_connection_release

logger = logging.getLogger(__name__)


async def reply_events(*, reply: Message) -> AsyncIterator[streaming.SseEvent]:
    """The events of one reply for one client: what was generated so far, then the rest as it
    comes, then `done` with the final message; keep-alives while nothing happens.

    A finished reply is served from the database at once. While following, each quiet
    keep-alive interval also checks the database, so a reply whose `done` never reached Redis
    (a Redis restart, a worker that died after a cancel) still ends.
    """
    follower = streaming.ReplyFollower()
    try:
        if reply.status in Message.FINISHED:
            # Unless a live worker is still storing the text of a canceled reply: follow that.
            current, settled = (
                (reply, True)
                if reply.lease_expires_at is None
                else await _reply_settled(reply_id=reply.pk)
            )
            if current is not None and settled:
                for event in follower.finish(message_payload(current)):
                    yield event
                return
        async with streaming.ReplyEventSource(reply_id=reply.pk) as source:
            backlog = await source.backlog()
            follower.skip_superseded(backlog)
            for event in follower.feed(backlog):
                yield event
            while not follower.finished:
                raise_if_cancellation_lost()  # a client that left during a Redis call
                entries = await source.wait(seconds=settings.REPLY_STREAM_KEEPALIVE_SECONDS)
                if entries:
                    for event in follower.feed(entries):
                        yield event
                    continue
                yield streaming.KEEPALIVE
                current, settled = await _reply_settled(reply_id=reply.pk)
                if current is None:
                    yield streaming.SseEvent(
                        "error", {"code": "not_found", "message": "The message was deleted."}
                    )
                    return
                if settled:
                    for event in follower.finish(message_payload(current)):
                        yield event
    except (RedisError, DatabaseError):
        logger.warning("Reply %s: the event stream broke off", reply.pk, exc_info=True)
        yield streaming.SseEvent(
            "error",
            {
                "code": "stream_unavailable",
                "message": "The reply's live stream is unavailable; poll the message instead.",
            },
        )


async def _reply_settled(*, reply_id: int) -> tuple[Message | None, bool]:
    """The reply, and whether it is finished with no worker left to publish its end."""
    reply = await Message.objects.annotate(lease_live=lease_live()).filter(pk=reply_id).afirst()
    abandoned = None
    if reply is not None and reply.status in Message.IN_FLIGHT and not reply.lease_live:
        current = await sync_to_async(reply_settle_if_abandoned)(reply=reply)
        abandoned = current if current.status in Message.FINISHED else None
    await sync_to_async(db_connection_release)()
    if abandoned is not None:
        return abandoned, True
    if reply is None:
        return None, False
    return reply, reply.status in Message.FINISHED and not reply.lease_live
