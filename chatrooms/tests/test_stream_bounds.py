"""The bounds of open reply streams: per user across processes, per process, and the Redis
connections all of a process's streams share."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, AsyncRequestFactory
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from chatrooms import stream_slots, streaming
from chatrooms.api.reply_views import reply_stream
from chatrooms.models import Message
from chatrooms.stream_reader import CLIENT_NAME
from chatrooms.tests.factories import ChatroomFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _url(message: Message) -> str:
    return f"/api/chatroom/{message.chatroom_id}/message/{message.pk}/stream"


def _auth(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


async def _open(message: Message, user: User) -> Any:
    """A stream opened and left open: its first event is read, and a task goes on reading
    the rest (`response.rest`) until the stream ends or `_close` hangs up."""
    response: Any = await AsyncClient().get(_url(message), headers=_auth(user))
    if response.streaming:
        chunks = aiter(response.streaming_content)
        response.first = await anext(chunks)
        response.rest = asyncio.ensure_future(_read_rest(chunks))
    return response


async def _read_rest(chunks: Any) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def _close(response: Any) -> None:
    """The client goes away: as Django's ASGI handler does then, cancel the sending task."""
    response.rest.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await response.rest


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, json.loads(response.content)["error"]["code"]


def _slots_held_elsewhere(user: User, count: int, *, lapse_in: float) -> None:
    """Slots of streams that another web process holds (or held, when `lapse_in` < 0)."""
    members = {f"elsewhere-{index}": time.time() + lapse_in for index in range(count)}
    streaming.redis_client().zadd(stream_slots.slots_key(user.pk), members)


def _streaming_reply(make_exchange: Any) -> Message:
    reply = make_exchange()
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)
    streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=1)
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="Hello")
    return reply


def test_a_users_next_stream_past_the_cap_is_429_and_others_still_open(
    make_exchange, pipeline_user, settings
):
    reply = _streaming_reply(make_exchange)
    other = UserFactory.create()
    other_reply = _streaming_reply(
        lambda: make_exchange(chatroom=ChatroomFactory.create(user=other))
    )
    _slots_held_elsewhere(pipeline_user, settings.MAX_OPEN_STREAMS_PER_USER, lapse_in=30)

    async def go() -> tuple[Any, Any]:
        refused = await _open(reply, pipeline_user)
        opened = await _open(other_reply, other)  # another user's stream still opens
        await _close(opened)
        return refused, opened

    refused, opened = async_to_sync(go)()
    assert _error(refused) == (429, "too_many_streams")
    body = json.loads(refused.content)["error"]
    assert body["details"] == {"limit": settings.MAX_OPEN_STREAMS_PER_USER}
    assert int(refused["Retry-After"]) == settings.REPLY_STREAM_KEEPALIVE_SECONDS
    assert opened.status_code == 200
    assert opened.first.startswith(b"event: delta")


def test_slots_of_a_dead_process_lapse_by_themselves(make_exchange, pipeline_user, settings):
    reply = _streaming_reply(make_exchange)
    _slots_held_elsewhere(pipeline_user, settings.MAX_OPEN_STREAMS_PER_USER, lapse_in=-1)

    async def go() -> Any:
        response = await _open(reply, pipeline_user)
        await _close(response)
        return response

    assert async_to_sync(go)().status_code == 200


def test_a_closed_stream_gives_its_slot_back(make_exchange, pipeline_user, settings):
    settings.MAX_OPEN_STREAMS_PER_USER = 1
    reply = _streaming_reply(make_exchange)
    key = stream_slots.slots_key(pipeline_user.pk)

    async def go() -> tuple[int, Any, int, Any]:
        first = await _open(reply, pipeline_user)
        held = streaming.redis_client().zcard(key)
        refused = await _open(reply, pipeline_user)
        await _close(first)  # the client went away
        after = streaming.redis_client().zcard(key)
        again = await _open(reply, pipeline_user)
        await _close(again)
        return held, refused, after, again

    held, refused, after, again = async_to_sync(go)()
    assert held == 1
    assert _error(refused) == (429, "too_many_streams")
    assert after == 0
    assert again.status_code == 200
    assert stream_slots.process_streams_open() == 0


def test_a_stream_dropped_before_its_first_byte_frees_its_process_slot(
    make_exchange, pipeline_user
):
    """The client left between the slot's taking and the first read: Django drops the
    response unread, and the generator that would give the slot back never runs."""
    reply = _streaming_reply(make_exchange)
    request = AsyncRequestFactory().get(_url(reply), headers=_auth(pipeline_user))

    async def go() -> int:
        response = await reply_stream(request, reply.chatroom_id, reply.pk)
        assert response.status_code == 200
        held = stream_slots.process_streams_open()
        del response
        gc.collect()
        return held

    assert async_to_sync(go)() == 1
    assert stream_slots.process_streams_open() == 0


def test_an_open_stream_stays_counted_after_its_slots_key_is_lost(
    make_exchange, pipeline_user, settings
):
    """The key expired (no open for a while) or Redis restarted empty: the open stream's
    next renewal puts its slot back, so the cap still holds."""
    settings.MAX_OPEN_STREAMS_PER_USER = 1
    settings.REPLY_STREAM_KEEPALIVE_SECONDS = 1
    reply = _streaming_reply(make_exchange)
    key = stream_slots.slots_key(pipeline_user.pk)

    async def go() -> tuple[Any, int]:
        first = await _open(reply, pipeline_user)
        streaming.redis_client().delete(key)
        await asyncio.sleep(2.5)  # a keep-alive or two: the slot is renewed
        refused = await _open(reply, pipeline_user)
        ttl = streaming.redis_client().ttl(key)
        await _close(first)
        return refused, ttl

    refused, ttl = async_to_sync(go)()
    assert _error(refused) == (429, "too_many_streams")
    assert 0 < ttl <= 6


def test_the_process_cap_refuses_the_next_stream_of_anyone(make_exchange, pipeline_user, settings):
    settings.MAX_OPEN_STREAMS_PER_PROCESS = 1
    reply = _streaming_reply(make_exchange)

    async def go() -> tuple[Any, Any]:
        first = await _open(reply, pipeline_user)
        refused = await _open(reply, pipeline_user)
        await _close(first)
        return first, refused

    first, refused = async_to_sync(go)()
    assert first.status_code == 200
    assert _error(refused) == (429, "too_many_streams")
    assert json.loads(refused.content)["error"]["details"] == {"limit": 1}
    assert stream_slots.process_streams_open() == 0


def test_many_open_streams_share_a_few_redis_connections(make_exchange, pipeline_user, settings):
    """40 streams of one reply, open at once, each getting every live event, over at most
    STREAM_REDIS_CONNECTIONS connections."""
    settings.MAX_OPEN_STREAMS_PER_USER = 100
    reply = _streaming_reply(make_exchange)
    redis = streaming.redis_client()

    async def read_all(response: Any) -> bytes:
        return response.first + await response.rest

    async def go() -> tuple[list[bytes], int]:
        # Earlier tests' event loops may have left their own pools' connections behind.
        before = _stream_connections(redis.client_list())
        streams = await asyncio.gather(*(_open(reply, pipeline_user) for _ in range(40)))
        await asyncio.sleep(0.5)  # all of them waiting for what comes next
        connections = _stream_connections(redis.client_list()) - before
        streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=5, text=" world")
        done = {"id": reply.pk, "content": "Hello world", "status": "completed"}
        streaming.stream_done_publish(reply_id=reply.pk, message=done)
        bodies = await asyncio.wait_for(asyncio.gather(*map(read_all, streams)), timeout=10)
        return bodies, connections

    bodies, connections = async_to_sync(go)()
    assert 1 <= connections <= settings.STREAM_REDIS_CONNECTIONS
    for body in bodies:
        assert body.count(b"event: delta") == 2
        assert b'{"text":" world"}' in body
        assert body.count(b"event: done") == 1


def _stream_connections(clients: list[dict[str, Any]]) -> int:
    return sum(1 for client in clients if client.get("name") == CLIENT_NAME)
