"""What each reply cost in tokens: on the reply (`usage`, `model`) and added up per user
and day (`usage.tokens_today` of /api/user/me and of the send's answer)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from testing.fake_gemini import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(pipeline_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(pipeline_user)
    return api


def _generated(reply: Message, client: APIClient) -> dict:
    reply_generate.apply(args=[reply.pk])
    path = f"/api/chatroom/{reply.chatroom_id}/message/{reply.pk}"
    response = client.get(path)
    assert response.status_code == 200
    return response.json()


def _tokens_today(client: APIClient) -> int:
    return int(client.get("/api/user/me").json()["usage"]["tokens_today"])


def test_each_reply_carries_what_the_model_reported_and_the_day_adds_them_up(
    fake_gemini, make_exchange, client
):
    fake_gemini.script(
        Reply(text="Light comes in quanta.", prompt_tokens=30, output_tokens=7),
        Reply(text="Yes.", prompt_tokens=41, output_tokens=2),
    )
    assert _tokens_today(client) == 0

    first = _generated(make_exchange("What is light?"), client)
    assert first["model"] == "gemini-2.5-flash"
    assert first["usage"] == {
        "prompt_tokens": 30,
        "output_tokens": 7,
        "total_tokens": 37,
        "estimated": False,
    }
    assert _tokens_today(client) == 37

    second = _generated(make_exchange("Is it a wave?"), client)
    assert second["usage"]["total_tokens"] == 43
    assert _tokens_today(client) == 80
    assert client.get("/api/subscription/status").json()["usage"]["tokens_today"] == 80


def test_a_failed_reply_costs_nothing_and_a_users_message_has_no_usage(
    fake_gemini, make_exchange, client
):
    fake_gemini.script(Reply(status=400))
    failed = _generated(make_exchange(), client)
    assert failed["status"] == "failed"
    assert failed["usage"] is None
    assert _tokens_today(client) == 0
    chatroom_id = Message.objects.get(pk=failed["id"]).chatroom_id
    prompt = Message.objects.get(chatroom_id=chatroom_id, role="user")
    body = client.get(f"/api/chatroom/{prompt.chatroom_id}/message/{prompt.pk}").json()
    assert (body["model"], body["usage"], body["superseded"]) == (None, None, False)


def test_the_offline_model_counts_estimates_and_says_so(settings, make_exchange, client):
    settings.GEMINI_API_KEY = ""
    settings.OFFLINE_MODEL_CHUNK_DELAY_MS = 0

    reply = _generated(make_exchange("Hello there"), client)

    assert reply["model"] == "offline (not Gemini)"
    usage = reply["usage"]
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] > 0 and usage["output_tokens"] > 0
    assert _tokens_today(client) == usage["total_tokens"]
