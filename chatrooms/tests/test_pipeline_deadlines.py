"""Deadlines and leases on a timer. Under Celery's threads pool no time limit stops a task,
and a model can keep a worker thread waiting without a chunk (a slow first byte, a stall):
the lease is renewed and the deadline (REPLY_TIME_LIMIT_SECONDS) enforced by the process's
keeper thread, so the reply is generated once, even with the sweep looking for lapsed ones."""

from __future__ import annotations

import threading
import time

import pytest

from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from core.db import db_connection_release
from testing.e2e import wait_until
from testing.fake_gemini import Reply

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status
LEASE = 1.0  # renewed every third of it


@pytest.fixture
def short_lease(settings, fake_gemini) -> None:
    settings.REPLY_LEASE_SECONDS = LEASE
    settings.GEMINI_TIMEOUT_SECONDS = 5  # longer than the lease, and than any deadline here


def _status(reply: Message) -> str:
    status = Message.objects.values_list("status", flat=True).get(pk=reply.pk)
    db_connection_release()
    return status


@pytest.mark.parametrize(
    ("script", "content", "counted_after"),
    [
        (Reply(text="Too late.", pre_delay=2.5), "", 0),
        (Reply(text="One two three.", chunks=3, hang=2.5, hang_after_chunks=1), "One ", 1),
    ],
    ids=["slow first byte", "stalled after a chunk"],
)
def test_a_reply_past_its_deadline_fails_then_once_with_its_text_so_far(
    short_lease,
    sweeping,
    settings,
    fake_gemini,
    make_exchange,
    counted,
    pipeline_user,
    published,
    script,
    content,
    counted_after,
):
    settings.REPLY_TIME_LIMIT_SECONDS = 1.5  # after the lease, before the model's next byte
    fake_gemini.script(script)
    reply = make_exchange()
    worker = threading.Thread(target=reply_generate.apply, args=([reply.pk],))
    started = time.monotonic()
    worker.start()
    try:
        wait_until(lambda: _status(reply) == Status.FAILED, timeout=10, what="the reply to fail")
        failed_after = time.monotonic() - started
    finally:
        worker.join(timeout=10)

    assert failed_after < 2.3  # at its deadline, not when the model spoke again (at 2.5 s)
    reply.refresh_from_db()
    assert (reply.status, reply.error_code, reply.attempts) == (Status.FAILED, "ai_timeout", 1)
    assert reply.error_message == "The model took too long to answer."
    assert reply.content == content  # the worker's own write, after the model spoke, refused
    assert counted(pipeline_user.pk) == counted_after  # the refund rule, at the deadline too
    assert len(fake_gemini.requests) == 1
    events = published(reply.pk)
    assert "".join(e["text"] for e in events if e["type"] == "delta") == content
    assert [e["message"]["status"] for e in events if e["type"] == "done"] == ["failed"]


def test_a_model_slower_between_chunks_than_the_lease_is_kept_and_completes(
    short_lease, sweeping, fake_gemini, make_exchange, published
):
    fake_gemini.script(Reply(text="Slow but steady.", chunks=2, chunk_delay=1.3))
    reply = make_exchange()
    reply_generate.apply(args=[reply.pk])

    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.attempts) == (
        Status.COMPLETED,
        "Slow but steady.",
        1,
    )
    assert len(fake_gemini.requests) == 1
    assert [e["type"] for e in published(reply.pk)].count("start") == 1
