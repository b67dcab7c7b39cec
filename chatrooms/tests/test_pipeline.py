"""The reply task run in-process against the fake Gemini: lifecycle, retries, idempotency."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatrooms import replies
from chatrooms.models import Message
from chatrooms.replies import retry_delay
from chatrooms.tasks import reply_generate
from chatrooms.tests.conftest import model_contents, system_instruction
from chatrooms.tests.factories import MessageFactory
from testing.fake_gemini import Reply

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


def _run(reply: Message) -> Message:
    reply_generate.apply(args=[reply.pk])
    reply.refresh_from_db()
    return reply


def test_reply_completes_with_text_tokens_and_model(fake_gemini, make_exchange, published):
    fake_gemini.script(
        Reply(text="Light comes in quanta called photons.", chunks=4, output_tokens=9)
    )
    reply = _run(make_exchange("What is a photon?"))

    assert reply.status == Status.COMPLETED
    assert reply.content == "Light comes in quanta called photons."
    assert reply.output_tokens == 9
    assert reply.prompt_tokens is not None and reply.prompt_tokens > 0
    assert reply.model_name == "gemini-2.5-flash"
    assert reply.completed_at is not None
    assert reply.attempts == 1
    assert reply.lease_expires_at is None
    assert (reply.error_code, reply.error_message) == ("", "")

    events = published(reply.pk)
    deltas = [e["text"] for e in events if e["type"] == "delta"]
    assert len(deltas) == 4
    assert "".join(deltas) == reply.content
    assert events[-1]["type"] == "done"
    assert events[-1]["message"]["status"] == "completed"
    assert events[-1]["message"]["content"] == reply.content


def test_the_model_is_asked_for_at_most_the_configured_output(fake_gemini, make_exchange, settings):
    _run(make_exchange())
    config = fake_gemini.requests[-1]["body"]["generationConfig"]
    assert config["maxOutputTokens"] == settings.AI_MAX_OUTPUT_TOKENS > 0


def test_a_reply_cut_at_the_output_bound_completes_with_its_text(
    fake_gemini, make_exchange, counted, pipeline_user
):
    fake_gemini.script(Reply(text="A long answer that was cut", finish_reason="MAX_TOKENS"))
    reply = _run(make_exchange())

    assert (reply.status, reply.content) == (Status.COMPLETED, "A long answer that was cut")
    assert reply.error_code == ""
    assert counted(pipeline_user.pk) == 1


def test_history_and_system_prompt_reach_the_model(fake_gemini, make_exchange, pipeline_chatroom):
    fake_gemini.script(Reply(text="A particle of light."), Reply(text="Yes, massless."))
    _run(make_exchange("What is a photon?"))
    # Replies that did not complete are not part of the conversation the model sees, nor is
    # a prompt the safety filters blocked (sent again, it would block every later reply).
    MessageFactory.create(chatroom=pipeline_chatroom, role="user", content="Say something bad")
    MessageFactory.create(
        chatroom=pipeline_chatroom, role="model", content="", status=Status.BLOCKED
    )
    MessageFactory.create(
        chatroom=pipeline_chatroom, role="model", content="Par", status="canceled"
    )
    MessageFactory.create(chatroom=pipeline_chatroom, role="model", content="Oops", status="failed")
    second = _run(make_exchange("Is it massless?"))

    assert second.content == "Yes, massless."
    request = fake_gemini.requests[-1]
    assert system_instruction(request) == "You are a terse physicist."
    assert model_contents(request) == [
        ("user", "What is a photon?"),
        ("model", "A particle of light."),
        ("user", "Is it massless?"),
    ]


def test_the_history_is_the_newest_messages_oldest_first(fake_gemini, make_exchange, monkeypatch):
    fake_gemini.script(Reply(text="A1"), Reply(text="A2"), Reply(text="A3"))
    _run(make_exchange("Q1"))
    _run(make_exchange("Q2"))
    monkeypatch.setattr(replies, "HISTORY_MAX_MESSAGES", 3)
    _run(make_exchange("Q3"))

    assert model_contents(fake_gemini.requests[-1]) == [
        ("user", "Q2"),
        ("model", "A2"),
        ("user", "Q3"),
    ]


def test_an_empty_system_prompt_is_not_sent(fake_gemini, make_exchange, pipeline_chatroom):
    pipeline_chatroom.system_prompt = ""
    pipeline_chatroom.save()
    _run(make_exchange("Hello"))
    assert system_instruction(fake_gemini.requests[-1]) is None


def test_context_budget_drops_the_oldest_turns(
    fake_gemini, make_exchange, pipeline_chatroom, settings
):
    for index in range(6):
        MessageFactory.create(
            chatroom=pipeline_chatroom, role="user", content=f"old question {index} " * 5
        )
        MessageFactory.create(
            chatroom=pipeline_chatroom,
            role="model",
            content=f"old answer {index} " * 5,
            status=Status.COMPLETED,
        )
    # Each old turn is about 20 tokens (4 characters per token): room for the prompt, the
    # system prompt and the newest four of them.
    settings.AI_CONTEXT_TOKENS = 100
    _run(make_exchange("The question now"))

    sent = model_contents(fake_gemini.requests[-1])
    assert sent[-1] == ("user", "The question now")
    assert [text.split()[:3] for _, text in sent[:-1]] == [
        ["old", "question", "4"],
        ["old", "answer", "4"],
        ["old", "question", "5"],
        ["old", "answer", "5"],
    ]


def test_retryable_errors_are_retried_then_the_reply_completes(
    fake_gemini, make_exchange, published, counted, pipeline_user
):
    fake_gemini.script(
        Reply(status=503),
        Reply(text="Partial answer that breaks", chunks=2, status=500, error_after_chunks=1),
        Reply(status=429),
        Reply(text="Third time lucky.", chunks=2),
    )
    reply = _run(make_exchange())

    assert reply.status == Status.COMPLETED
    assert reply.content == "Third time lucky."
    assert reply.attempts == 4
    assert len(fake_gemini.requests) == 4
    assert counted(pipeline_user.pk) == 1
    events = published(reply.pk)
    # Each attempt starts with its mark; the first failed before any text, so its mark is
    # followed at once by the second's.
    assert [(e["type"], e["attempt"]) for e in events[:3]] == [
        ("start", "1"),
        ("start", "2"),
        ("delta", "2"),
    ]
    assert "".join(e["text"] for e in events if e["type"] == "delta" and e["attempt"] == "4") == (
        "Third time lucky."
    )


def test_retries_exhausted_fail_the_reply_and_refund_the_prompt(
    fake_gemini, make_exchange, counted, pipeline_user, settings, published
):
    settings.AI_MAX_RETRIES = 2
    fake_gemini.script(Reply(status=503), Reply(status=503), Reply(status=503))
    reply = make_exchange()
    assert counted(pipeline_user.pk) == 1

    reply = _run(reply)

    assert reply.status == Status.FAILED
    assert reply.error_code == "ai_unavailable"
    assert reply.error_message == "The model is unavailable right now; please try again later."
    assert reply.completed_at is not None
    assert len(fake_gemini.requests) == 3
    assert counted(pipeline_user.pk) == 0
    assert published(reply.pk)[-1]["message"]["error"]["code"] == "ai_unavailable"


def test_a_non_retryable_error_fails_at_once(fake_gemini, make_exchange, counted, pipeline_user):
    fake_gemini.script(Reply(status=400, message="Request contains an invalid argument."))
    reply = _run(make_exchange())

    assert reply.status == Status.FAILED
    assert reply.error_code == "ai_error"
    assert reply.error_message == "The model could not answer this request."
    assert len(fake_gemini.requests) == 1
    assert counted(pipeline_user.pk) == 0


VENDOR_WORDS = "Quota project qp-7731 exceeded for key AIza...; see go/vendor-internal"


@pytest.mark.parametrize(
    ("script", "code", "status"),
    [
        ([Reply(status=400, message=VENDOR_WORDS)], "ai_error", "400"),
        ([Reply(status=429, message=VENDOR_WORDS)] * 2, "ai_unavailable", "429"),
        (
            [Reply(text="Half an", status=403, message=VENDOR_WORDS, error_after_chunks=1)],
            "ai_error",
            "403",
        ),
    ],
    ids=["refused", "retries exhausted", "mid-stream"],
)
def test_the_vendors_error_text_is_logged_never_shown(
    fake_gemini, make_exchange, settings, caplog, published, script, code, status
):
    settings.AI_MAX_RETRIES = 1
    fake_gemini.script(*script)
    reply = _run(make_exchange())

    assert (reply.status, reply.error_code) == (Status.FAILED, code)
    done = published(reply.pk)[-1]["message"]
    assert done["error"] == {"code": code, "message": reply.error_message}
    for shown in (reply.error_message, str(done)):
        assert "qp-7731" not in shown
        assert "vendor" not in shown.lower()
    logged = [r.getMessage() for r in caplog.records if "qp-7731" in r.getMessage()]
    assert logged, "the vendor's words are logged"
    assert all(status in line for line in logged)


@pytest.mark.filterwarnings("ignore:.*is not a valid BlockedReason:UserWarning")  # the SDK's
def test_a_block_reason_that_is_not_a_plain_code_is_not_shown(fake_gemini, make_exchange):
    fake_gemini.script(Reply(block_reason="Vendor words: see go/vendor-internal"))
    reply = _run(make_exchange())

    assert (reply.status, reply.error_code) == (Status.BLOCKED, "blocked")
    assert reply.error_message == "The model's safety filters blocked this reply (OTHER)."


@pytest.mark.parametrize("text", ["", "  \n "])
def test_an_empty_reply_is_never_completed(
    fake_gemini, make_exchange, counted, pipeline_user, text
):
    fake_gemini.script(Reply(text=text, chunks=1))
    reply = _run(make_exchange())
    assert reply.status == Status.FAILED
    assert reply.content.strip() == ""
    assert counted(pipeline_user.pk) == 0


def test_a_blocked_prompt_ends_blocked_with_the_reason(
    fake_gemini, make_exchange, counted, pipeline_user, published
):
    fake_gemini.script(Reply(block_reason="SAFETY"))
    reply = _run(make_exchange("Something unsafe"))

    assert reply.status == Status.BLOCKED
    assert reply.error_code == "blocked"
    assert "SAFETY" in reply.error_message
    assert len(fake_gemini.requests) == 1
    assert counted(pipeline_user.pk) == 1  # answered, if by a refusal: not given back
    done = published(reply.pk)[-1]["message"]
    assert (done["status"], done["error"]["code"]) == ("blocked", "blocked")


def test_a_reply_stopped_by_a_filter_keeps_what_was_streamed(fake_gemini, make_exchange, published):
    fake_gemini.script(Reply(text="It begins well and then", chunks=2, finish_reason="SAFETY"))
    reply = _run(make_exchange())

    assert reply.status == Status.BLOCKED
    assert reply.content == "It begins well and then"
    deltas = [e["text"] for e in published(reply.pk) if e["type"] == "delta"]
    assert "".join(deltas) == reply.content


def test_a_redelivered_task_for_a_finished_reply_does_nothing(
    fake_gemini, make_exchange, published
):
    reply = _run(make_exchange())
    before = Message.objects.values().get(pk=reply.pk)
    events_before = published(reply.pk)

    reply_generate.apply(args=[reply.pk])

    assert Message.objects.values().get(pk=reply.pk) == before
    assert len(fake_gemini.requests) == 1
    assert published(reply.pk) == events_before


def test_a_reply_under_a_live_lease_is_left_to_its_worker(fake_gemini, make_exchange):
    reply = make_exchange()
    claim = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert claim is not None

    reply_generate.apply(args=[reply.pk])

    reply.refresh_from_db()
    assert (reply.status, reply.attempts, reply.content) == (Status.STREAMING, 1, "")
    assert fake_gemini.requests == []


def test_an_expired_lease_is_taken_over_and_the_stale_worker_cannot_write(
    fake_gemini, make_exchange, counted, pipeline_user
):
    reply = make_exchange()
    stale = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert stale is not None
    Message.objects.filter(pk=reply.pk).update(lease_expires_at=Now() - dt.timedelta(seconds=1))
    fake_gemini.script(Reply(text="The fresh attempt."))

    reply = _run(reply)
    assert (reply.status, reply.attempts, reply.content) == (
        Status.COMPLETED,
        2,
        "The fresh attempt.",
    )

    # The first worker wakes up late: none of its writes land.
    assert replies.reply_leases_renew(claims=[stale]) == set()
    assert replies.reply_complete(claim=stale, text="Stale text", finish=_finish()) is None
    assert replies.reply_fail(claim=stale, text="", code="ai_error") is None
    assert not replies.reply_retry_later(claim=stale, delay_seconds=1)
    assert (
        replies.reply_cancel_settle(reply_id=reply.pk, attempt=stale.attempt, text="Stale") is None
    )
    reply.refresh_from_db()
    assert (reply.status, reply.content) == (Status.COMPLETED, "The fresh attempt.")
    assert counted(pipeline_user.pk) == 1


def test_while_a_newer_attempt_streams_the_stale_one_cannot_write(make_exchange, counted):
    reply = make_exchange()
    stale = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert stale is not None
    Message.objects.filter(pk=reply.pk).update(lease_expires_at=Now() - dt.timedelta(seconds=1))
    fresh = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert fresh is not None
    assert (stale.attempt, fresh.attempt) == (1, 2)

    assert replies.reply_leases_renew(claims=[stale]) == set()
    assert replies.reply_complete(claim=stale, text="Stale", finish=_finish()) is None
    assert replies.reply_fail(claim=stale, text="", code="ai_error") is None
    assert replies.reply_block(claim=stale, text="", reason="SAFETY") is None
    assert not replies.reply_retry_later(claim=stale, delay_seconds=1)
    reply.refresh_from_db()
    assert (reply.status, reply.attempts, reply.content) == (Status.STREAMING, 2, "")
    assert counted(reply.chatroom.user_id) == 1

    assert replies.reply_leases_renew(claims=[stale, fresh]) == {fresh}
    completed = replies.reply_complete(claim=fresh, text="Fresh", finish=_finish())
    assert completed is not None and completed.content == "Fresh"


@pytest.mark.parametrize("ending", ["completed", "failed", "blocked"])
def test_the_final_write_returns_the_reply_as_stored(make_exchange, ending):
    # The done event and the task's log are made from it: every field as the ORM reads it.
    reply = make_exchange()
    claim = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert claim is not None
    if ending == "completed":
        written = replies.reply_complete(claim=claim, text="Hi there", finish=_finish())
    elif ending == "failed":
        written = replies.reply_fail(claim=claim, text="", code="ai_error")
    else:
        written = replies.reply_block(claim=claim, text="Hi", reason="SAFETY")
    assert written is not None

    stored = Message.objects.get(pk=reply.pk)
    fields = [field.attname for field in Message._meta.concrete_fields]
    assert [getattr(written, name) for name in fields] == [getattr(stored, name) for name in fields]
    assert written.status == ending
    assert written.completed_at is not None and written.completed_at.tzinfo is not None


def test_only_one_of_two_claims_wins(make_exchange):
    reply = make_exchange()
    assert replies.reply_claim(reply_id=reply.pk, model_name="m") is not None
    assert replies.reply_claim(reply_id=reply.pk, model_name="m") is None


def test_a_user_message_is_never_claimed(pipeline_chatroom):
    message = MessageFactory.create(chatroom=pipeline_chatroom, role="user", status=Status.PENDING)
    assert replies.reply_claim(reply_id=message.pk, model_name="m") is None


def test_a_worker_that_keeps_dying_gives_up(fake_gemini, make_exchange, settings, counted):
    settings.AI_MAX_RETRIES = 1
    reply = make_exchange()
    # Two earlier attempts whose workers died (the leases ran out, nothing was written).
    Message.objects.filter(pk=reply.pk).update(
        status=Status.STREAMING, attempts=2, lease_expires_at=timezone.now() - dt.timedelta(1)
    )
    reply = _run(reply)
    assert (reply.status, reply.error_code) == (Status.FAILED, "ai_unavailable")
    assert fake_gemini.requests == []
    assert counted(reply.chatroom.user_id) == 0


def test_backoff_doubles_from_the_setting(settings):
    settings.AI_RETRY_BACKOFF_SECONDS = 2
    assert [retry_delay(attempt) for attempt in (1, 2, 3)] == [2, 4, 8]


def test_a_failed_attempt_waits_for_its_retry_time(fake_gemini, make_exchange, settings):
    settings.AI_RETRY_BACKOFF_SECONDS = 30
    reply = make_exchange()
    claim = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert claim is not None
    assert replies.reply_retry_later(claim=claim, delay_seconds=retry_delay(claim.attempt))
    reply.refresh_from_db()
    assert reply.status == Status.PENDING
    assert reply.lease_expires_at is not None
    wait = (reply.lease_expires_at - timezone.now()).total_seconds()
    assert 25 < wait <= 30


def test_chunks_cost_no_database_queries(fake_gemini, make_exchange):
    counts = []
    for chunks in (2, 12):
        fake_gemini.script(Reply(text=" ".join(["word"] * 24), chunks=chunks))
        reply = make_exchange()
        with CaptureQueriesContext(connection) as queries:
            reply_generate.apply(args=[reply.pk])
        reply.refresh_from_db()
        assert reply.status == Status.COMPLETED
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_task_gives_its_database_connection_back(fake_gemini, make_exchange):
    reply = make_exchange()
    connection.ensure_connection()
    reply_generate.apply(args=[reply.pk])
    assert connection.connection is None
    assert Message.objects.get(pk=reply.pk).status == Status.COMPLETED


def _finish():
    from chatrooms.ai.base import Finish

    return Finish(finish_reason="STOP")
