"""The reply pipeline's metrics: a reply counted once by the status it ends in, when that
status is committed; model timings and tokens; open streams."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction

from chatrooms import replies
from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.test_stream_bounds import _close, _open, _streaming_reply
from testing.fake_gemini import Reply
from testing.metrics import metric_value

# The worker commits for real: the counter moves on commit.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status
_NAMES: tuple[tuple[str, dict[str, str]], ...] = (
    ("gemini_replies_total", {"status": "completed"}),
    ("gemini_model_latency_seconds_count", {}),
    ("gemini_model_time_to_first_token_seconds_count", {}),
    ("gemini_model_tokens_total", {"direction": "in"}),
    ("gemini_model_tokens_total", {"direction": "out"}),
)


def _values() -> list[float]:
    return [metric_value(name, **labels) for name, labels in _NAMES]


def test_a_completed_reply_is_counted_once_with_its_timings_and_tokens(fake_gemini, make_exchange):
    fake_gemini.script(Reply(text="Light, quantized.", chunks=3, prompt_tokens=7, output_tokens=3))
    reply = make_exchange()
    before = _values()

    reply_generate.apply(args=[reply.pk])
    reply_generate.apply(args=[reply.pk])  # a redelivered task: nothing left to do

    reply.refresh_from_db()
    assert reply.status == Status.COMPLETED
    moved = [after - was for after, was in zip(_values(), before, strict=True)]
    assert moved == [1, 1, 1, 7, 3]


def test_a_final_write_rolled_back_is_not_counted(make_exchange):
    reply = make_exchange()
    claim = replies.reply_claim(reply_id=reply.pk, model_name="m")
    assert claim is not None
    before = metric_value("gemini_replies_total", status="failed")

    with pytest.raises(RuntimeError), transaction.atomic():
        assert replies.reply_fail(claim=claim, text="", code="ai_error") is not None
        raise RuntimeError("the transaction ends in an error")

    assert metric_value("gemini_replies_total", status="failed") == before
    assert replies.reply_fail(claim=claim, text="", code="ai_error") is not None
    assert metric_value("gemini_replies_total", status="failed") == before + 1


def test_an_open_stream_is_counted_while_it_is_open(make_exchange, pipeline_user):
    reply = _streaming_reply(make_exchange)
    open_streams = sync_to_async(metric_value)

    async def go() -> tuple[float, float, float]:
        before = await open_streams("gemini_open_streams")
        response = await _open(reply, pipeline_user)
        during = await open_streams("gemini_open_streams")
        await _close(response)
        return before, during, await open_streams("gemini_open_streams")

    before, during, after = async_to_sync(go)()
    assert (during, after) == (before + 1, before)
