"""The refund rule: a reply that ends `failed` gives its prompt back only when the user got
nothing of value from it; one that fails after text was streamed keeps its text and its
count. A prompt is never both refunded and answered."""

from __future__ import annotations

import pytest

from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from testing.fake_gemini import Reply

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


def _run(reply: Message) -> Message:
    reply_generate.apply(args=[reply.pk])
    reply.refresh_from_db()
    return reply


def _streamed(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def test_a_reply_that_fails_with_nothing_gives_its_prompt_back(
    fake_gemini, make_exchange, counted, pipeline_user, published
):
    fake_gemini.script(Reply(status=400))
    reply = _run(make_exchange())

    assert (reply.status, reply.content) == (Status.FAILED, "")
    assert counted(pipeline_user.pk) == 0
    assert published(reply.pk)[-1]["message"]["content"] == ""


def test_a_reply_that_fails_after_text_keeps_its_text_and_its_count(
    fake_gemini, make_exchange, counted, pipeline_user, published
):
    fake_gemini.script(
        Reply(text="Photons are waves and", chunks=2, status=400, error_after_chunks=1)
    )
    reply = _run(make_exchange())

    assert reply.status == Status.FAILED
    assert reply.content == "Photons are "
    assert counted(pipeline_user.pk) == 1
    events = published(reply.pk)
    assert _streamed(events) == reply.content
    assert events[-1]["message"]["content"] == reply.content


def test_whitespace_is_nothing_of_value(fake_gemini, make_exchange, counted, pipeline_user):
    fake_gemini.script(Reply(text=" \n", status=400, error_after_chunks=1))
    reply = _run(make_exchange())

    assert reply.status == Status.FAILED
    assert reply.content.strip() == ""
    assert counted(pipeline_user.pk) == 0


def test_text_of_an_attempt_that_was_retried_is_not_what_the_user_got(
    fake_gemini, make_exchange, counted, pipeline_user, settings
):
    settings.AI_MAX_RETRIES = 1
    fake_gemini.script(
        Reply(text="Started, then", chunks=2, status=503, error_after_chunks=1),
        Reply(status=503),
    )
    reply = _run(make_exchange())

    # The last attempt's text is what a reply keeps; this one had none.
    assert (reply.status, reply.content, reply.attempts) == (Status.FAILED, "", 2)
    assert counted(pipeline_user.pk) == 0
