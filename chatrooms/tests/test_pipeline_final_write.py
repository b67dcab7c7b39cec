"""The final write of a reply: it survives its database connection being cut (tried again
within the lease, never a second model call), and text PostgreSQL cannot store."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from testing.e2e import database_url, wait_until
from testing.fake_gemini import Reply

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


def _streamed(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


@pytest.mark.parametrize(
    ("generated", "stored"),
    [
        ("Null\x00 bytes\x00 are dropped.", "Null bytes are dropped."),
        ("A lone \ud83d surrogate.", "A lone \ufffd surrogate."),
    ],
    ids=["NUL", "lone surrogate"],
)
def test_text_the_database_cannot_store_is_cleaned_not_a_crash(
    fake_gemini, make_exchange, published, generated, stored
):
    fake_gemini.script(Reply(text=generated, chunks=3))
    reply = make_exchange()
    reply_generate.apply(args=[reply.pk])
    reply.refresh_from_db()

    assert (reply.status, reply.content) == (Status.COMPLETED, stored)
    events = published(reply.pk)
    assert _streamed(events) == stored
    assert events[-1]["message"]["content"] == stored
    assert len(fake_gemini.requests) == 1


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    """A connection of the test's own to the test database, outside Django."""
    with psycopg.connect(database_url(), autocommit=True) as conn:
        yield conn


def _waiting_final_write(admin: psycopg.Connection) -> int | None:
    """The server process of the fenced final write of a reply (`replies._end`, in a WITH
    when it counts tokens too) that waits for a row lock, if any. The test has one reply: its
    id is not looked for in the query's text, which shows placeholders (prepared statements).
    """
    row = admin.execute(
        """SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'
             AND query LIKE '%%UPDATE "chatrooms_message"%%' AND query LIKE '%% WHERE id = %%'"""
    ).fetchone()
    return int(row[0]) if row else None


@pytest.mark.parametrize(
    ("script", "status", "content", "counted_after"),
    [
        (
            Reply(text="Every word arrives.", chunks=3, pre_delay=0.5),
            "completed",
            "Every word arrives.",
            1,
        ),
        # The write that gives the prompt back too: it happens once.
        (Reply(status=400, pre_delay=0.5), "failed", "", 0),
    ],
    ids=["completed", "failed and refunded"],
)
def test_the_final_write_survives_its_connection_being_cut(
    settings,
    sweeping,
    fake_gemini,
    make_exchange,
    published,
    counted,
    pipeline_user,
    admin,
    script,
    status,
    content,
    counted_after,
    caplog,
):
    # Shorter than the write's pause before trying again: the lease must be kept meanwhile,
    # or the sweep hands the reply to another worker and the model is called twice.
    settings.REPLY_LEASE_SECONDS = 1
    fake_gemini.script(script)
    reply = make_exchange()
    worker = threading.Thread(target=reply_generate.apply, args=([reply.pk],))
    worker.start()
    try:
        wait_until(
            lambda: (
                admin.execute(
                    "SELECT status FROM chatrooms_message WHERE id = %s", (reply.pk,)
                ).fetchone()
                == ("streaming",)
            ),
            timeout=10,
            what="the claim",
        )
        with psycopg.connect(database_url()) as blocker:
            # Hold the reply's row while the model answers, so that the final write waits
            # for it, where its connection can be cut.
            blocker.execute("SELECT 1 FROM chatrooms_message WHERE id = %s FOR UPDATE", (reply.pk,))
            pid = wait_until(
                lambda: _waiting_final_write(admin), timeout=10, what="the final write"
            )
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            blocker.rollback()
    finally:
        worker.join(timeout=15)

    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.attempts) == (status, content, 1)
    assert len(fake_gemini.requests) == 1
    assert counted(pipeline_user.pk) == counted_after
    events = published(reply.pk)
    assert [e["message"]["status"] for e in events if e["type"] == "done"] == [status]
    assert f"Reply {reply.pk}: PostgreSQL unavailable" in caplog.text  # it was cut, and retried
