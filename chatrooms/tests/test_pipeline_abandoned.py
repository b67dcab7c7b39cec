"""A reply that no worker is left to finish does not block its chatroom: with no live worker,
the next send fails it (`worker_unavailable`) and gives its prompt back. While any worker is
alive, or the reply's lease still runs, the send answers 409 as always."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.db.models.functions import Now
from django.test import AsyncClient
from rest_framework_simplejwt.tokens import AccessToken

from chatrooms import replies, streaming
from chatrooms.models import Message
from chatrooms.tests.conftest import prompts_counted, stream_entries
from chatrooms.tests.factories import ChatroomFactory, UserFactory, client_for, error_code
from core.workers import worker_heartbeat_record
from testing.e2e import Stack, sse_parse_body, wait_until
from testing.fake_gemini import FakeGemini, Reply

Status = Message.Status
GRACE = 120


@pytest.fixture
def grace(settings) -> int:
    settings.REPLY_ABANDONED_AFTER_SECONDS = GRACE
    settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS = 30
    return GRACE


def _idle(reply: Message, *, seconds: float, lease_ended: bool = False, **fields: Any) -> None:
    """Nothing happened to `reply` for `seconds` (past the end of its lease, if it has one)."""
    when = Now() - dt.timedelta(seconds=seconds)
    Message.objects.filter(pk=reply.pk).update(
        updated_at=when, lease_expires_at=when if lease_ended else None, **fields
    )


def _send(reply: Message) -> Any:
    client = client_for(reply.chatroom.user)
    return client.post(
        f"/api/chatroom/{reply.chatroom_id}/message", {"content": "Hello?"}, format="json"
    )


@pytest.mark.django_db
def test_with_no_worker_alive_a_send_fails_the_stuck_reply_and_refunds_its_prompt(
    make_exchange, grace, django_capture_on_commit_callbacks
):
    stuck = make_exchange()
    _idle(stuck, seconds=grace + 1)
    user_id = stuck.chatroom.user_id
    assert prompts_counted(user_id) == 1

    with django_capture_on_commit_callbacks(execute=True):
        response = _send(stuck)

    assert response.status_code == 202, response.json()
    stuck.refresh_from_db()
    assert (stuck.status, stuck.content, stuck.error_code) == ("failed", "", "worker_unavailable")
    assert stuck.completed_at is not None
    assert prompts_counted(user_id) == 1  # the stuck one given back, the new one counted
    assert stream_entries(stuck.pk)[-1]["message"]["status"] == "failed"  # followers are told
    # A worker that shows up later finds nothing to do.
    assert replies.reply_claim(reply_id=stuck.pk, model_name="m") is None


@pytest.mark.django_db
def test_polling_the_stuck_reply_ends_it_too(make_exchange, grace):
    stuck = make_exchange()
    _idle(stuck, seconds=grace + 1)
    client = client_for(stuck.chatroom.user)

    polled = client.get(f"/api/chatroom/{stuck.chatroom_id}/message/{stuck.pk}").json()

    assert (polled["status"], polled["error"]["code"]) == ("failed", "worker_unavailable")
    assert prompts_counted(stuck.chatroom.user_id) == 0


@pytest.mark.django_db(transaction=True)
def test_following_the_stuck_reply_ends_with_done(make_exchange, grace, settings):
    settings.REPLY_STREAM_KEEPALIVE_SECONDS = 1
    stuck = make_exchange()
    _idle(stuck, seconds=grace + 1)
    path = f"/api/chatroom/{stuck.chatroom_id}/message/{stuck.pk}/stream"
    headers = {"Authorization": f"Bearer {AccessToken.for_user(stuck.chatroom.user)}"}

    async def follow() -> list[tuple[str, Any]]:
        response: Any = await AsyncClient().get(path, headers=headers)
        body = [chunk async for chunk in response.streaming_content]
        return sse_parse_body(b"".join(body))

    async def follow_for_a_while() -> list[tuple[str, Any]]:
        return await asyncio.wait_for(follow(), timeout=10)  # not forever, if it never ends

    events = async_to_sync(follow_for_a_while)()

    assert [name for name, _ in events] == ["comment", "done"]
    assert (events[-1][1]["status"], events[-1][1]["error"]["code"]) == (
        "failed",
        "worker_unavailable",
    )
    assert prompts_counted(stuck.chatroom.user_id) == 0


@pytest.mark.django_db
def test_a_streaming_reply_whose_lease_ran_out_long_ago_is_settled_too(make_exchange, grace):
    stuck = make_exchange()
    _idle(stuck, seconds=grace + 1, lease_ended=True, status=Status.STREAMING, attempts=1)

    assert _send(stuck).status_code == 202
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error_code) == ("failed", "worker_unavailable")
    assert prompts_counted(stuck.chatroom.user_id) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    ["a worker is alive", "idle for less than the grace", "its lease still runs", "backing off"],
)
def test_a_reply_someone_may_still_finish_keeps_its_chatroom_busy(make_exchange, grace, case):
    reply = make_exchange()
    if case == "a worker is alive":
        _idle(reply, seconds=grace + 1)
        worker_heartbeat_record(hostname="w1@host")
    elif case == "idle for less than the grace":
        _idle(reply, seconds=grace - 5)
    elif case == "its lease still runs":
        _idle(reply, seconds=grace + 1, status=Status.STREAMING, attempts=1)
        Message.objects.filter(pk=reply.pk).update(lease_expires_at=Now() + dt.timedelta(seconds=5))
    else:  # a failed attempt waits for its retry: the lease field holds the retry time
        _idle(reply, seconds=grace + 1, attempts=1)
        Message.objects.filter(pk=reply.pk).update(lease_expires_at=Now() - dt.timedelta(seconds=5))

    response = _send(reply)

    assert response.status_code == 409
    assert error_code(response) == "reply_in_progress"
    reply.refresh_from_db()
    assert reply.status in Message.IN_FLIGHT
    assert prompts_counted(reply.chatroom.user_id) == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_reply_whose_only_worker_died_stops_blocking_its_chatroom(
    e2e_stack: Stack, fake_gemini: FakeGemini
):
    e2e_stack.env.update(
        WORKER_HEARTBEAT_INTERVAL_SECONDS="1",
        WORKER_HEARTBEAT_MAX_AGE_SECONDS="2",
        REPLY_ABANDONED_AFTER_SECONDS="1",
    )
    e2e_stack.start_web()
    doomed = e2e_stack.start_worker(name="doomed")
    e2e_stack.wait_ready()
    user = UserFactory.create()
    client = httpx.Client(
        base_url=e2e_stack.url,
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
        timeout=20,
    )
    room = ChatroomFactory.create(user=user).pk
    fake_gemini.script(Reply(text=" ".join(f"w{i}" for i in range(20)), chunks=20, chunk_delay=0.2))

    def send() -> httpx.Response:
        return client.post(f"/api/chatroom/{room}/message", json={"content": "A long story"})

    first = send()
    assert first.status_code == 202
    reply_id = first.json()["reply"]["id"]
    wait_until(
        lambda: streaming.redis_client().xlen(streaming.events_key(reply_id)) >= 2,
        timeout=15,
        what="the first chunks",
        watch=[doomed],
    )
    doomed.kill()  # and no other worker: nothing will ever sweep this reply
    assert send().status_code == 409  # its lease still runs

    def accepted() -> httpx.Response | None:
        response = send()
        return response if response.status_code == 202 else None

    second = wait_until(accepted, timeout=15, what="a send to get through", interval=0.25)
    dead = client.get(f"/api/chatroom/{room}/message/{reply_id}").json()
    assert (dead["status"], dead["error"]["code"]) == ("failed", "worker_unavailable")
    assert second.json()["usage"]["used"] == 1  # the dead reply's prompt was given back
    assert second.json()["reply"]["status"] == "pending"
