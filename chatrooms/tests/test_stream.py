"""GET .../message/{mid}/stream: Server-Sent Events through the ASGI stack (async view)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any, cast

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.db.models.functions import Now
from django.test import AsyncClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from chatrooms import streaming
from chatrooms.following import reply_events
from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.factories import ChatroomFactory, MessageFactory, UserFactory, client_for
from testing.e2e import sse_parse_body, wait_until
from testing.fake_gemini import Reply
from testing.lost_cancellation import cancellation_lost_by_a_library

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


def _url(message: Message) -> str:
    return f"/api/chatroom/{message.chatroom_id}/message/{message.pk}/stream"


def _auth(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


def _get(path: str, headers: dict[str, str] | None = None, method: str = "get") -> Any:
    """The response, with the whole SSE body read into `events`."""

    async def go() -> Any:
        response = await getattr(AsyncClient(), method)(path, headers=headers or {})
        if response.streaming:
            body = b"".join([chunk async for chunk in response.streaming_content])
            response.events = sse_parse_body(body)
        return response

    return async_to_sync(go)()


def _deltas(events: list[tuple[str, Any]]) -> list[str]:
    return [data["text"] for name, data in events if name == "delta"]


def test_after_the_end_the_full_text_and_done_come_at_once(make_exchange, pipeline_user):
    reply = make_exchange()
    Message.objects.filter(pk=reply.pk).update(status=Status.COMPLETED, content="All of it.")
    # No Redis stream at all (expired long ago): the database has the answer.
    response = _get(_url(reply), _auth(pipeline_user))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert response.events[0] == ("delta", {"text": "All of it."})
    name, done = response.events[1]
    assert name == "done"
    assert (done["id"], done["status"], done["content"]) == (reply.pk, "completed", "All of it.")
    assert len(response.events) == 2


def test_a_failed_reply_ends_with_done_and_its_error(make_exchange, pipeline_user):
    reply = make_exchange()
    Message.objects.filter(pk=reply.pk).update(
        status=Status.FAILED, error_code="ai_unavailable", error_message="Gemini is down."
    )
    response = _get(_url(reply), _auth(pipeline_user))
    assert response.events == [
        ("done", {**response.events[0][1], "status": "failed", "content": ""}),
    ]
    assert response.events[0][1]["error"] == {
        "code": "ai_unavailable",
        "message": "Gemini is down.",
    }


def test_a_stream_replays_what_the_worker_published(fake_gemini, make_exchange, pipeline_user):
    fake_gemini.script(Reply(text="One two three four five six", chunks=3))
    reply = make_exchange()
    reply_generate.apply(args=[reply.pk])
    # Make the database say "streaming" so the view follows Redis, as a client connecting
    # just before the end would.
    Message.objects.filter(pk=reply.pk).update(status=Status.STREAMING)

    response = _get(_url(reply), _auth(pipeline_user))

    assert _deltas(response.events) == ["One two ", "three four ", "five six"]
    assert response.events[-1][0] == "done"
    assert response.events[-1][1]["content"] == "One two three four five six"


def test_a_late_joiner_gets_the_text_so_far_then_the_rest(
    fake_gemini, make_exchange, pipeline_user
):
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    fake_gemini.script(Reply(text=text, chunks=10, chunk_delay=0.1))
    reply = make_exchange()
    worker = threading.Thread(target=reply_generate.apply, args=([reply.pk],))
    worker.start()
    try:
        key = streaming.events_key(reply.pk)
        wait_until(lambda: streaming.redis_client().xlen(key) >= 3, timeout=10, what="three chunks")
        response = _get(_url(reply), _auth(pipeline_user))
    finally:
        worker.join(timeout=10)

    deltas = _deltas(response.events)
    assert "".join(deltas) == text
    assert len(deltas) == 10  # followed live, chunk by chunk, not rebuilt from the database
    assert [name for name, _ in response.events].count("done") == 1
    assert response.events[-1][1]["status"] == "completed"


def test_a_restart_after_text_was_sent_ends_the_stream_with_an_error(make_exchange, pipeline_user):
    reply = make_exchange()
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="First try ")
    streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=2)
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=2, offset=0, text="Second try")

    # A client that had the first attempt's text is told to reconnect...
    follower = streaming.ReplyFollower()
    entries = streaming.redis_client().xrange(streaming.events_key(reply.pk))
    events = follower.feed(cast(list[streaming.Entry], entries))
    assert [e.name for e in events] == ["delta", "error"]
    assert events[1].data == {
        "code": "stream_restarted",
        "message": "The reply is being generated again from the start; reconnect to follow it.",
    }

    # ...and a client connecting now only sees the new attempt.
    streaming.stream_done_publish(
        reply_id=reply.pk,
        message={"id": reply.pk, "content": "Second try", "status": "completed"},
    )
    response = _get(_url(reply), _auth(pipeline_user))
    assert _deltas(response.events) == ["Second try"]
    assert response.events[-1][0] == "done"


def test_chunks_of_a_stale_attempt_are_ignored(make_exchange, pipeline_user):
    reply = make_exchange()
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=2, offset=0, text="New ")
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="OLD")
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=2, offset=4, text="text")
    streaming.stream_done_publish(
        reply_id=reply.pk, message={"id": reply.pk, "content": "New text", "status": "completed"}
    )
    response = _get(_url(reply), _auth(pipeline_user))
    assert _deltas(response.events) == ["New ", "text"]


def test_a_reply_whose_end_never_reached_redis_ends_from_the_database(
    make_exchange, pipeline_user, settings
):
    settings.REPLY_STREAM_KEEPALIVE_SECONDS = 1
    reply = make_exchange()
    Message.objects.filter(pk=reply.pk).update(status=Status.STREAMING)
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="Hel")

    def worker_finishes_but_redis_loses_the_end() -> None:
        Message.objects.filter(pk=reply.pk).update(
            status=Status.COMPLETED, content="Hello", lease_expires_at=None
        )
        connection.close()  # this thread's own connection

    # While the client waits, the worker stores the reply; its `done` never reaches Redis.
    later = threading.Timer(0.3, worker_finishes_but_redis_loses_the_end)
    later.start()
    try:
        response = _get(_url(reply), _auth(pipeline_user))
    finally:
        later.join()

    names = [name for name, _ in response.events]
    assert names == ["delta", "comment", "delta", "done"]
    assert response.events[1] == ("comment", "keep-alive")
    assert _deltas(response.events) == ["Hel", "lo"]
    assert response.events[-1][1]["content"] == "Hello"


def test_a_canceled_reply_is_followed_until_its_worker_stored_the_text(
    make_exchange, pipeline_user
):
    reply = make_exchange()
    # Canceled by the user; its worker (still holding the lease) stores "Kept text" and
    # announces it. A client connecting in between must end with that text, not "".
    Message.objects.filter(pk=reply.pk).update(
        status=Status.CANCELED, attempts=1, lease_expires_at=Now() + dt.timedelta(seconds=30)
    )
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="Kept text")
    done = {"id": reply.pk, "content": "Kept text", "status": "canceled"}
    streaming.stream_done_publish(reply_id=reply.pk, message=done)

    response = _get(_url(reply), _auth(pipeline_user))

    assert response.events == [("delta", {"text": "Kept text"}), ("done", done)]


def test_a_canceled_reply_whose_worker_died_is_served_from_the_database(
    make_exchange, pipeline_user
):
    reply = make_exchange()
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="Lost text")
    Message.objects.filter(pk=reply.pk).update(
        status=Status.CANCELED, attempts=1, lease_expires_at=Now() - dt.timedelta(seconds=5)
    )
    response = _get(_url(reply), _auth(pipeline_user))
    assert [name for name, _ in response.events] == ["done"]
    assert response.events[0][1]["content"] == ""


def test_canceling_a_pending_reply_ends_its_stream(make_exchange, pipeline_user):
    reply = make_exchange()
    cancel = client_for(pipeline_user).post(
        f"/api/chatroom/{reply.chatroom_id}/message/{reply.pk}/cancel"
    )
    assert cancel.status_code == 200
    # on_commit does not run inside the test transaction: publish as the commit would.
    streaming.stream_done_publish(reply_id=reply.pk, message=cancel.json())
    Message.objects.filter(pk=reply.pk).update(status=Status.PENDING)  # connect "before"

    response = _get(_url(reply), _auth(pipeline_user))
    assert response.events == [("done", cancel.json())]
    assert cancel.json()["status"] == "canceled"


def test_a_user_message_streams_as_its_content(pipeline_chatroom, pipeline_user):
    message = MessageFactory.create(chatroom=pipeline_chatroom, role="user", content="Hi there")
    response = _get(_url(message), _auth(pipeline_user))
    assert _deltas(response.events) == ["Hi there"]
    assert response.events[-1][1]["role"] == "user"


# --- Errors: the contract's JSON, never a stream ----------------------------------------------


def _error(response: Any) -> tuple[int, str]:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    return response.status_code, body["error"]["code"]


def test_no_token_is_401(make_exchange):
    response = _get(_url(make_exchange()))
    assert _error(response) == (401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_token_is_401(make_exchange):
    response = _get(_url(make_exchange()), {"Authorization": "Bearer not-a-jwt"})
    assert _error(response) == (401, "token_invalid")


def test_another_users_reply_is_404(make_exchange):
    stranger = UserFactory.create()
    assert _error(_get(_url(make_exchange()), _auth(stranger))) == (404, "not_found")


def test_a_reply_under_the_wrong_chatroom_is_404(make_exchange, pipeline_user):
    reply = make_exchange()
    other_room = ChatroomFactory.create(user=pipeline_user)
    path = f"/api/chatroom/{other_room.pk}/message/{reply.pk}/stream"
    assert _error(_get(path, _auth(pipeline_user))) == (404, "not_found")


def test_only_get_is_allowed(make_exchange, pipeline_user):
    response = _get(_url(make_exchange()), _auth(pipeline_user), method="post")
    assert _error(response) == (405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_opening_streams_counts_against_the_request_rate(
    make_exchange, pipeline_user, settings, time_machine
):
    settings.API_RATE_PER_MINUTE = 1
    time_machine.move_to(
        dt.datetime(2026, 5, 1, 12, 0, 30, tzinfo=dt.UTC)
    )  # not near a minute's end
    reply = make_exchange()
    Message.objects.filter(pk=reply.pk).update(status=Status.COMPLETED, content="Done.")
    assert _get(_url(reply), _auth(pipeline_user)).status_code == 200
    refused = _get(_url(reply), _auth(pipeline_user))
    assert _error(refused) == (429, "rate_limited")
    assert 1 <= int(refused["Retry-After"]) <= 30


def test_the_stream_is_documented_in_the_openapi_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/chatroom/{chatroom_id}/message/{message_id}/stream"]["get"]
    assert operation["operationId"] == "chatroom_message_stream"
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"401", "404", "405"} <= set(operation["responses"])
    assert "stream_restarted" in operation["description"]
    assert [p["name"] for p in operation["parameters"]] == ["chatroom_id", "message_id"]


def test_a_final_message_that_does_not_extend_what_was_seen_still_ends_with_done():
    # A cancel that landed while the reply waited for a retry: the client saw the first
    # attempt's text, the stored content is empty. The stream still ends with `done`.
    follower = streaming.ReplyFollower()
    follower.feed([("1-0", {"type": "delta", "attempt": "1", "offset": "0", "text": "Hel"})])
    final = {"id": 7, "content": "", "status": "canceled"}
    events = follower.finish(final)
    assert [(event.name, event.data) for event in events] == [("done", final)]


def _delta(offset: int, text: str, attempt: int = 1) -> streaming.Entry:
    return ("0-1", {"type": "delta", "attempt": str(attempt), "offset": str(offset), "text": text})


def _shown(events: list[streaming.SseEvent]) -> list[tuple[str | None, Any]]:
    return [(event.name, event.data) for event in events]


def test_after_a_hole_in_the_stream_the_rest_of_the_text_comes_with_done():
    """Redis restarted empty after "Hello ": the new stream goes on at "wor"."""
    follower = streaming.ReplyFollower()
    seen = follower.feed([_delta(0, "Hello ")])
    held = follower.feed([_delta(9, "ld"), _delta(11, "!")])
    final = {"id": 7, "content": "Hello world!", "status": "completed"}
    done = follower.finish(final)

    assert _shown(seen) == [("delta", {"text": "Hello "})]
    assert held == []
    assert _shown(done) == [("delta", {"text": "world!"}), ("done", final)]


def test_a_late_joiner_whose_stream_starts_mid_text_waits_for_done():
    follower = streaming.ReplyFollower()
    backlog = [_delta(6, "world")]
    follower.skip_superseded(backlog)
    assert follower.feed(backlog) == []
    final = {"id": 7, "content": "Hello world", "status": "completed"}
    assert _shown(follower.finish(final)) == [("delta", {"text": "Hello world"}), ("done", final)]


def test_a_chunk_seen_before_is_not_sent_twice():
    follower = streaming.ReplyFollower()
    events = follower.feed([_delta(0, "Hello"), _delta(0, "Hello"), _delta(3, "lo there")])
    assert _shown(events) == [("delta", {"text": "Hello"}), ("delta", {"text": " there"})]


def test_a_new_attempt_after_a_hole_streams_live_again():
    follower = streaming.ReplyFollower()
    follower.feed([_delta(4, "late")])  # a hole: nothing sent yet
    events = follower.feed(
        [("0-2", {"type": "start", "attempt": "2"}), _delta(0, "Fresh", attempt=2)]
    )
    assert _shown(events) == [("delta", {"text": "Fresh"})]


def test_chunks_of_a_worker_without_offsets_follow_each_other():
    """During a rolling deploy, a worker of the previous release publishes no offsets."""
    follower = streaming.ReplyFollower()
    old = [("0-1", {"type": "delta", "attempt": "1", "text": text}) for text in ("Hel", "lo")]
    assert _shown(follower.feed(old)) == [("delta", {"text": "Hel"}), ("delta", {"text": "lo"})]


def test_a_stream_whose_cancellation_a_library_lost_still_ends(make_exchange):
    """redis-py's sends lose a cancellation that comes as one completes (Python 3.11's
    `asyncio.wait_for`): the stream of a client that left then still ends, at its next turn,
    not at the next keep-alive or at the reply's end."""
    reply = make_exchange()  # pending: nothing will come

    async def follow_after_a_lost_cancellation() -> None:
        await cancellation_lost_by_a_library()
        async with asyncio.timeout(5):  # a keep-alive interval is 15 s
            async for _ in reply_events(reply=reply):
                pass

    with pytest.raises(asyncio.CancelledError):  # not TimeoutError
        asyncio.run(follow_after_a_lost_cancellation())
