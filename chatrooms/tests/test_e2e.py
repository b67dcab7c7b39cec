"""End to end: real HTTP to uvicorn, real Celery workers, the fake Gemini, real Redis and
PostgreSQL. Replies are read the two ways a client can: the SSE stream and polling."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection
from django.db.models.functions import Now
from rest_framework_simplejwt.tokens import AccessToken

from chatrooms.models import Chatroom, Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.conftest import model_contents, system_instruction
from chatrooms.tests.factories import ChatroomFactory, MessageFactory, UserFactory
from testing.e2e import Stack, sse_parse, wait_until
from testing.fake_gemini import FakeGemini, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

Status = Message.Status


@pytest.fixture
def user():
    return UserFactory.create()


def _client(stack: Stack, user) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
        timeout=20,
    )


def _send(client: httpx.Client, chatroom_id: int, content: str) -> int:
    response = client.post(f"/api/chatroom/{chatroom_id}/message", json={"content": content})
    assert response.status_code == 202, response.text
    assert response.json()["reply"]["status"] == "pending"
    return int(response.json()["reply"]["id"])


def _events(client: httpx.Client, chatroom_id: int, reply_id: int) -> Iterator[tuple[str, Any]]:
    path = f"/api/chatroom/{chatroom_id}/message/{reply_id}/stream"
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for name, data in sse_parse(response.iter_lines()):
            if name != "comment":
                yield name, data
            if name in {"done", "error"}:
                return


def _poll(client: httpx.Client, chatroom_id: int, reply_id: int, *, timeout: float) -> dict:
    def finished() -> dict | None:
        response = client.get(f"/api/chatroom/{chatroom_id}/message/{reply_id}")
        assert response.status_code == 200
        body = response.json()
        return body if body["status"] not in {"pending", "streaming"} else None

    return wait_until(finished, timeout=timeout, what=f"reply {reply_id} to finish")


def test_a_message_sent_over_http_is_answered_by_the_worker(
    e2e_stack: Stack, fake_gemini: FakeGemini, user
):
    e2e_stack.start_web()
    e2e_stack.start_worker(name="w1")
    e2e_stack.wait_ready()
    client = _client(e2e_stack, user)
    created = client.post(
        "/api/chatroom", json={"name": "Physics", "system_prompt": "Answer as a physicist."}
    )
    assert created.status_code == 201
    room = created.json()["id"]
    fake_gemini.script(
        Reply(text="A photon is a quantum of light, massless and always fast.", chunks=6,
              chunk_delay=0.05),
        Reply(text="Yes: its rest mass is zero.", chunks=3),
    )  # fmt: skip

    first = _send(client, room, "What is a photon?")
    events = list(_events(client, room, first))
    polled = _poll(client, room, first, timeout=10)

    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) == 6
    assert events[-1][0] == "done"
    assert "".join(deltas) == events[-1][1]["content"] == polled["content"]
    assert polled["content"] == "A photon is a quantum of light, massless and always fast."
    assert polled["status"] == "completed"

    second = _send(client, room, "Is it massless?")
    assert _poll(client, room, second, timeout=10)["content"] == "Yes: its rest mass is zero."
    request = fake_gemini.requests[-1]
    assert system_instruction(request) == "Answer as a physicist."
    assert model_contents(request) == [
        ("user", "What is a photon?"),
        ("model", "A photon is a quantum of light, massless and always fast."),
        ("user", "Is it massless?"),
    ]
    # A client arriving after the end gets the whole text at once.
    late = list(_events(client, room, first))
    assert late == [("delta", {"text": polled["content"]}), ("done", polled)]


def test_the_sweep_recovers_a_reply_whose_broker_message_was_lost(
    e2e_stack: Stack, fake_gemini: FakeGemini, user
):
    room = ChatroomFactory.create(user=user, system_prompt="")
    MessageFactory.create(chatroom=room, role="user", content="Is anyone there?")
    reply = Message.objects.create(chatroom=room, role="model", status=Status.PENDING)
    Message.objects.filter(pk=reply.pk).update(updated_at=Now())  # never enqueued
    fake_gemini.script(Reply(text="Yes, I am here."))

    e2e_stack.start_web()
    e2e_stack.start_worker(name="w1", beat=True)
    e2e_stack.wait_ready()

    polled = _poll(_client(e2e_stack, user), room.pk, reply.pk, timeout=15)
    assert (polled["status"], polled["content"]) == ("completed", "Yes, I am here.")
    assert len(fake_gemini.requests) == 1


def test_cancel_over_http_stops_the_worker_and_ends_the_stream(
    e2e_stack: Stack, fake_gemini: FakeGemini, user
):
    e2e_stack.start_web()
    e2e_stack.start_worker(name="w1")
    e2e_stack.wait_ready()
    client = _client(e2e_stack, user)
    room = ChatroomFactory.create(user=user).pk
    full = " ".join(f"w{index}" for index in range(30))
    fake_gemini.script(Reply(text=full, chunks=30, chunk_delay=0.1))
    reply_id = _send(client, room, "Count slowly")

    events: list[tuple[str, Any]] = []
    for name, data in _events(client, room, reply_id):
        events.append((name, data))
        if len(events) == 3:
            canceled = client.post(f"/api/chatroom/{room}/message/{reply_id}/cancel")
            assert canceled.status_code == 200
            assert canceled.json()["status"] == "canceled"

    done = events[-1]
    assert done[0] == "done"
    assert done[1]["status"] == "canceled"
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert done[1]["content"] == streamed == canceled.json()["content"]
    assert 0 < len(streamed) < len(full)
    polled = client.get(f"/api/chatroom/{room}/message/{reply_id}").json()
    assert (polled["status"], polled["content"]) == ("canceled", streamed)


def test_a_failing_model_is_retried_with_backoff(e2e_stack: Stack, fake_gemini: FakeGemini, user):
    e2e_stack.start_web()
    e2e_stack.start_worker(name="w1")
    e2e_stack.wait_ready()
    client = _client(e2e_stack, user)
    room = ChatroomFactory.create(user=user).pk
    fake_gemini.script(Reply(status=503), Reply(status=429), Reply(text="Back again."))
    stamps: list[float] = []

    def record_request_times() -> bool:
        while len(stamps) < len(fake_gemini.requests):
            stamps.append(time.monotonic())
        return len(stamps) >= 3

    reply_id = _send(client, room, "Hello?")
    wait_until(record_request_times, timeout=15, what="three model requests", interval=0.01)
    polled = _poll(client, room, reply_id, timeout=10)

    assert (polled["status"], polled["content"]) == ("completed", "Back again.")
    # AI_RETRY_BACKOFF_SECONDS=1: one second, then two.
    assert stamps[1] - stamps[0] >= 0.9
    assert stamps[2] - stamps[1] >= 1.9


def test_many_replies_at_once_share_a_few_database_connections(
    e2e_stack: Stack, fake_gemini: FakeGemini, user
):
    replies_count, connection_cap = 60, 4
    e2e_stack.env["REPLY_DB_CONNECTIONS"] = str(connection_cap)
    worker = e2e_stack.start_worker(name="w1", concurrency=replies_count)
    e2e_stack.wait_ready()
    rooms = [Chatroom.objects.create(user=user) for _ in range(replies_count)]
    reply_ids = []
    for room in rooms:
        MessageFactory.create(chatroom=room, role="user", content="Ping")
        reply_ids.append(
            Message.objects.create(chatroom=room, role="model", status=Status.PENDING).pk
        )
    fake_gemini.script(*[Reply(text="Pong pong pong", chunks=5, chunk_delay=0.2)] * replies_count)
    # Sessions already open (this process's own pool, the web server's) are not the worker's.
    baseline = _worker_connections()
    connections_seen = []

    def all_completed() -> bool:
        connections_seen.append(_worker_connections() - baseline)
        done = Message.objects.filter(pk__in=reply_ids, status=Status.COMPLETED).count()
        return done == replies_count

    started = time.monotonic()
    for reply_id in reply_ids:
        reply_generate.delay(reply_id)
    wait_until(all_completed, timeout=20, what="every reply", watch=[worker], interval=0.02)
    elapsed = time.monotonic() - started

    assert elapsed < 4, f"{replies_count} replies of 1 s each took {elapsed:.1f} s"
    # Holding a connection while the model streams would show ~60 here. (A closed session
    # lingers in pg_stat_activity for a moment, hence the margin over the cap.)
    assert max(connections_seen) <= 2 * connection_cap
    assert len(fake_gemini.requests) == replies_count


def _worker_connections() -> int:
    """Sessions on the test database other than this process's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_open_streams_share_a_few_threads_of_the_web_process(e2e_stack: Stack):
    """Forty streams of replies still pending (four users, ten each, the most they may open):
    the web process holds no thread per stream (Django's ASGI handler would park one each)."""
    e2e_stack.start_web()
    e2e_stack.wait_ready()
    assert e2e_stack.web is not None
    web_pid = e2e_stack.web.popen.pid
    url = httpx.URL(e2e_stack.url)
    requests = []
    for user in UserFactory.create_batch(4):
        room = ChatroomFactory.create(user=user)
        reply = MessageFactory.create(chatroom=room, role=Message.Role.MODEL, status=Status.PENDING)
        request = (
            f"GET /api/chatroom/{room.pk}/message/{reply.pk}/stream HTTP/1.1\r\n"
            f"Host: {url.host}\r\nAuthorization: Bearer {AccessToken.for_user(user)}\r\n\r\n"
        ).encode()
        requests += [request] * 10
    before = _threads(web_pid)
    streams = []
    try:
        for request in requests:
            stream = socket.create_connection((url.host, url.port), timeout=10)
            streams.append(stream)
            stream.sendall(request)
            assert stream.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        during = _threads(web_pid)
    finally:
        for stream in streams:
            stream.close()
    # The stream threads, and asyncio's own (its default executor resolves host names for
    # new Redis connections): a few, not one per stream.
    assert during - before < len(requests) // 2, (before, during)


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for process {pid}")
