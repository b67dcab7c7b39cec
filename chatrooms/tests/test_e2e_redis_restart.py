"""End to end: Redis, the broker, restarts empty while the worker streams a reply.

The Redis server is the test's own, never the machine's shared one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from chatrooms import streaming
from chatrooms.models import Message
from chatrooms.tests.factories import ChatroomFactory, UserFactory
from core.models import WorkerHeartbeat
from testing.e2e import Stack, wait_until
from testing.fake_gemini import FakeGemini, Reply
from testing.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(stack: Stack, user) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
        timeout=20,
    )


def _send(client: httpx.Client, chatroom_id: int, content: str) -> int:
    response = client.post(f"/api/chatroom/{chatroom_id}/message", json={"content": content})
    assert response.status_code == 202, response.text
    return int(response.json()["reply"]["id"])


def _finished(client: httpx.Client, chatroom_id: int, reply_id: int, **wait) -> dict:
    def body() -> dict | None:
        reply = client.get(f"/api/chatroom/{chatroom_id}/message/{reply_id}").json()
        return reply if reply["status"] not in {"pending", "streaming"} else None

    return wait_until(body, what=f"reply {reply_id} to finish", **wait)


def test_the_worker_survives_a_redis_restart_while_it_streams_a_reply(
    e2e_stack: Stack, fake_gemini: FakeGemini, own_redis: RedisServer
):
    e2e_stack.env.update(
        REDIS_URL=own_redis.url,
        CELERY_BROKER_URL=own_redis.url,
        WORKER_HEARTBEAT_INTERVAL_SECONDS="1",
    )
    e2e_stack.start_web()
    worker = e2e_stack.start_worker(name="w1", beat=True)
    e2e_stack.wait_ready()
    user = UserFactory.create()
    client = _client(e2e_stack, user)
    room = ChatroomFactory.create(user=user).pk
    story = " ".join(f"w{index}" for index in range(20))
    fake_gemini.script(
        Reply(text=story, chunks=20, chunk_delay=0.15),  # 3 s, restarted under it
        Reply(text="Still here.", chunks=2),
    )
    broker = redis.Redis.from_url(own_redis.url)

    reply_id = _send(client, room, "Tell me a long story")
    wait_until(
        lambda: broker.xlen(streaming.events_key(reply_id)) >= 3,
        timeout=15,
        what="the first chunks",
        watch=[worker],
    )
    own_redis.restart()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (restarted_at,) = cursor.fetchone()

    first = _finished(client, room, reply_id, timeout=20, watch=[worker])
    assert (first["status"], first["content"]) == ("completed", story)
    # The worker reconnected to the new, empty Redis and takes the next message from it.
    second_id = _send(client, room, "Are you still there?")
    second = _finished(client, room, second_id, timeout=20, watch=[worker])
    assert (second["status"], second["content"]) == ("completed", "Still here.")

    assert worker.alive, worker.log_tail()
    assert "Unrecoverable error" not in worker.log()
    # Each reply was generated once and written once.
    assert len(fake_gemini.requests) == 2
    assert list(
        Message.objects.filter(chatroom_id=room, role="model")
        .order_by("id")
        .values_list("status", "attempts")
    ) == [("completed", 1), ("completed", 1)]
    # Its heartbeat (what /readyz/worker reads) resumes once it consumes again ...
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(seen_at__gt=restarted_at).exists(),
        timeout=5,
        what="a heartbeat after the restart",
    )
    # ... and beat's sweeps go through the new Redis too, and run nothing finished again.
    sweeps = worker.log().count("chatrooms.replies_sweep") + 4
    wait_until(
        lambda: worker.log().count("chatrooms.replies_sweep") >= sweeps,
        timeout=10,
        what="two more sweeps",
        watch=[worker],
    )
    assert len(fake_gemini.requests) == 2
