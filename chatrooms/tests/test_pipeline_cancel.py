"""POST .../message/{mid}/cancel: the reply stops, keeps its text, and its stream ends."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db.models.functions import Now
from django.test import override_settings

from chatrooms import streaming
from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.factories import MessageFactory, UserFactory, client_for, error_code
from testing.e2e import wait_until
from testing.fake_gemini import Reply

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


def _cancel(user, message):
    return client_for(user).post(f"/api/chatroom/{message.chatroom_id}/message/{message.pk}/cancel")


def _deltas(events: list[dict[str, str]]) -> int:
    return sum(1 for event in events if event["type"] == "delta")


def test_canceling_a_pending_reply_ends_it_and_no_worker_runs_it(
    fake_gemini,
    make_exchange,
    pipeline_user,
    counted,
    published,
    django_capture_on_commit_callbacks,
):
    reply = make_exchange()
    with django_capture_on_commit_callbacks(execute=True):
        response = _cancel(pipeline_user, reply)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["content"]) == (reply.pk, "canceled", "")
    assert body["completed_at"] is not None
    # The stream's followers are told at once.
    assert published(reply.pk) == [{"type": "done", "message": body}]

    reply_generate.apply(args=[reply.pk])  # the task queued by the send arrives later
    reply.refresh_from_db()
    assert reply.status == Status.CANCELED
    assert fake_gemini.requests == []
    assert counted(pipeline_user.pk) == 1  # canceled prompts are not given back


def test_canceling_a_streaming_reply_stops_the_worker_and_keeps_the_text(
    fake_gemini, make_exchange, pipeline_user, counted, published
):
    words = [f"word{index}" for index in range(40)]
    fake_gemini.script(Reply(text=" ".join(words), chunks=40, chunk_delay=0.05))
    reply = make_exchange()
    worker = threading.Thread(target=reply_generate.apply, args=([reply.pk],))
    started = time.monotonic()
    worker.start()
    try:
        wait_until(lambda: _deltas(published(reply.pk)) >= 3, timeout=10, what="the first chunks")
        response = _cancel(pipeline_user, reply)
        assert response.status_code == 200
        assert response.json()["status"] == "canceled"
    finally:
        worker.join(timeout=10)
    elapsed = time.monotonic() - started

    assert elapsed < 1.5  # the whole reply would take 2 s: the worker stopped early
    reply.refresh_from_db()
    assert reply.status == Status.CANCELED
    events = published(reply.pk)
    streamed = "".join(e["text"] for e in events if e["type"] == "delta")
    assert reply.content == streamed
    assert 0 < len(reply.content) < len(" ".join(words))
    assert events[-1]["type"] == "done"
    assert events[-1]["message"]["status"] == "canceled"
    assert events[-1]["message"]["content"] == reply.content
    assert reply.lease_expires_at is None
    assert counted(pipeline_user.pk) == 1
    assert len(fake_gemini.requests) == 1


def test_cancel_answers_the_text_so_far_as_done_and_a_later_get_show_it(
    fake_gemini, make_exchange, pipeline_user, published
):
    fake_gemini.script(
        Reply(text=" ".join(f"w{n}" for n in range(40)), chunks=40, chunk_delay=0.05)
    )
    reply = make_exchange()
    worker = threading.Thread(target=reply_generate.apply, args=([reply.pk],))
    worker.start()
    try:
        wait_until(lambda: _deltas(published(reply.pk)) >= 3, timeout=10, what="the first chunks")
        answered = _cancel(pipeline_user, reply).json()
        got = (
            client_for(pipeline_user)
            .get(f"/api/chatroom/{reply.chatroom_id}/message/{reply.pk}")
            .json()
        )
    finally:
        worker.join(timeout=10)

    assert answered["status"] == "canceled"
    assert answered["content"].startswith("w0 w1 w2 ")
    assert got == answered
    events = published(reply.pk)
    done = [e["message"] for e in events if e["type"] == "done"]
    assert done == [answered]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == answered["content"]
    reply.refresh_from_db()
    assert (reply.content, reply.lease_expires_at) == (answered["content"], None)


def test_with_redis_down_cancel_still_stops_the_worker_which_stores_its_text(
    fake_gemini, make_exchange, pipeline_user, published, settings
):
    settings.REPLY_LEASE_SECONDS = 1  # the keeper renews, and so finds the cancel, every 1/3 s
    words = [f"w{n}" for n in range(40)]
    fake_gemini.script(Reply(text=" ".join(words), chunks=40, chunk_delay=0.05))
    reply = make_exchange()
    worker = threading.Thread(target=reply_generate.apply, args=([reply.pk],))
    started = time.monotonic()
    worker.start()
    try:
        wait_until(lambda: _deltas(published(reply.pk)) >= 3, timeout=10, what="the first chunks")
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens there
            response = _cancel(pipeline_user, reply)
    finally:
        worker.join(timeout=10)

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"  # its text may lag: the worker stores it
    assert time.monotonic() - started < 1.8  # the whole reply takes 2 s: the worker stopped
    reply.refresh_from_db()
    assert reply.status == Status.CANCELED
    assert 0 < len(reply.content) < len(" ".join(words))
    assert reply.content.startswith(response.json()["content"])
    done = published(reply.pk)[-1]
    assert (done["type"], done["message"]["content"]) == ("done", reply.content)
    assert len(fake_gemini.requests) == 1


def test_canceling_a_reply_whose_worker_died_ends_it_at_once(
    make_exchange, pipeline_user, published, django_capture_on_commit_callbacks
):
    reply = make_exchange()
    Message.objects.filter(pk=reply.pk).update(
        status=Status.STREAMING, attempts=1, lease_expires_at=Now() - dt.timedelta(seconds=5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = _cancel(pipeline_user, reply)

    assert response.json()["status"] == "canceled"
    reply.refresh_from_db()
    assert reply.lease_expires_at is None  # nobody will store text for it
    assert published(reply.pk)[-1] == {"type": "done", "message": response.json()}


def test_canceling_a_finished_reply_returns_it_unchanged(fake_gemini, make_exchange, pipeline_user):
    reply = make_exchange()
    reply_generate.apply(args=[reply.pk])
    reply.refresh_from_db()
    before = Message.objects.values().get(pk=reply.pk)

    response = _cancel(pipeline_user, reply)

    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["content"] == reply.content
    assert Message.objects.values().get(pk=reply.pk) == before


def test_a_user_message_is_not_cancelable(pipeline_chatroom, pipeline_user):
    message = MessageFactory.create(chatroom=pipeline_chatroom, role="user")
    response = _cancel(pipeline_user, message)
    assert response.status_code == 409
    assert error_code(response) == "not_cancelable"


def test_another_users_reply_is_404_and_stays_pending(make_exchange):
    reply = make_exchange()
    response = _cancel(UserFactory.create(), reply)
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    reply.refresh_from_db()
    assert reply.status == Status.PENDING


def test_cancel_needs_a_token(make_exchange, api_client):
    reply = make_exchange()
    response = api_client.post(f"/api/chatroom/{reply.chatroom_id}/message/{reply.pk}/cancel")
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"


def test_after_the_cancel_mark_no_chunk_joins_the_stream(make_exchange, published):
    reply = make_exchange()
    streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=1)
    assert not streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="a")
    streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=2)
    assert not streaming.stream_delta_publish(reply_id=reply.pk, attempt=2, offset=0, text="b")
    assert not streaming.stream_delta_publish(reply_id=reply.pk, attempt=2, offset=1, text="c")

    assert streaming.cancel_mark(reply_id=reply.pk, attempt=2) == "bc"
    assert streaming.stream_delta_publish(reply_id=reply.pk, attempt=2, offset=2, text="d")
    deltas = [e["text"] for e in published(reply.pk) if e["type"] == "delta"]
    assert deltas == ["a", "b", "c"]


def test_a_write_tried_again_after_its_answer_was_lost_is_applied_once(make_exchange, published):
    """script_run tries a script again after a connection error, when the first try may have
    been applied: here it was, and a cancel came in between."""
    reply = make_exchange()
    for _ in range(2):
        streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=1)
    assert not streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="ab")
    assert not streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=2, text="c")
    assert streaming.cancel_mark(reply_id=reply.pk, attempt=1) == "abc"
    # The chunk is in the cancel's text: its second try must not report it refused.
    assert not streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=2, text="c")
    assert streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=3, text="d")
    for _ in range(2):
        streaming.stream_done_publish(reply_id=reply.pk, message={"content": "abc"})

    assert [(e["type"], e.get("text")) for e in published(reply.pk)] == [
        ("start", None),
        ("delta", "ab"),
        ("delta", "c"),
        ("done", None),
    ]


def test_a_cancel_counts_a_chunk_written_twice_once(make_exchange, published):
    reply = make_exchange()
    streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=1)
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="ab")
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=2, text="cd")
    # Not the newest entry, so the write's own check lets it in again: a chunk wholly before
    # the text so far, then one that overlaps it.
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=0, text="ab")
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=1, text="bcde")
    deltas = [e["text"] for e in published(reply.pk) if e["type"] == "delta"]
    assert deltas == ["ab", "cd", "ab", "bcde"]
    assert streaming.cancel_mark(reply_id=reply.pk, attempt=1) == "abcde"


def test_a_cancel_leaves_the_text_to_the_worker_when_the_stream_lost_some(make_exchange):
    """Redis restarted empty under the reply: what the new stream holds is not all the text."""
    reply = make_exchange()
    streaming.stream_delta_publish(reply_id=reply.pk, attempt=1, offset=5, text="later")
    assert streaming.cancel_mark(reply_id=reply.pk, attempt=1) is None


def test_a_cancel_before_the_first_chunk_of_a_lost_stream_leaves_the_text_to_the_worker(
    make_exchange,
):
    """Nothing in the new stream, not even the attempt's start: the worker may have text."""
    reply = make_exchange()
    assert streaming.cancel_mark(reply_id=reply.pk, attempt=1) is None


def test_a_cancel_before_the_first_chunk_is_an_empty_text(make_exchange):
    reply = make_exchange()
    streaming.stream_attempt_start_publish(reply_id=reply.pk, attempt=1)
    assert streaming.cancel_mark(reply_id=reply.pk, attempt=1) == ""
