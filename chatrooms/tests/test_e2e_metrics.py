"""End to end: one scrape of the web server's /metrics adds up what every process recorded
(the web server's requests, the worker's replies), through PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from chatrooms.tests.factories import ChatroomFactory, UserFactory
from core.tests.test_metrics import samples
from testing.e2e import Stack, wait_until
from testing.fake_gemini import FakeGemini, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-scrape-token"
COMPLETED = ("gemini_replies_total", frozenset({("status", "completed")}))
NO_LABELS: frozenset[tuple[str, str]] = frozenset()
LATENCY = ("gemini_model_latency_seconds_count", NO_LABELS)
FIRST_TOKEN = ("gemini_model_time_to_first_token_seconds_count", NO_LABELS)
TOKENS_OUT = ("gemini_model_tokens_total", frozenset({("direction", "out")}))


def test_a_send_moves_the_reply_counter_and_the_latency_histogram(
    e2e_stack: Stack, fake_gemini: FakeGemini, tmp_path
):
    e2e_stack.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    e2e_stack.env["METRICS_TOKEN"] = TOKEN
    e2e_stack.start_web()
    e2e_stack.start_worker(name="w1")
    e2e_stack.wait_ready()
    user = UserFactory.create()
    room = ChatroomFactory.create(user=user)
    fake_gemini.script(Reply(text="Counted and timed.", chunks=3, output_tokens=4))
    client = httpx.Client(base_url=e2e_stack.url, timeout=20)

    def scrape() -> dict:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return samples(response.text)

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 404
    before = scrape()
    sent = client.post(
        f"/api/chatroom/{room.pk}/message",
        json={"content": "Count me"},
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
    )
    assert sent.status_code == 202, sent.text

    after = wait_until(
        lambda: (s := scrape()).get(COMPLETED, 0) > before.get(COMPLETED, 0) and s,
        timeout=15,
        what="the completed reply in /metrics",
        watch=e2e_stack.processes,
    )
    assert after[COMPLETED] == before.get(COMPLETED, 0) + 1
    assert after[LATENCY] == before.get(LATENCY, 0) + 1
    assert after[FIRST_TOKEN] == before.get(FIRST_TOKEN, 0) + 1
    assert after[TOKENS_OUT] == before.get(TOKENS_OUT, 0) + 4
    send_route = frozenset(
        {("method", "POST"), ("route", "api/chatroom/<int:chatroom_id>/message"), ("status", "202")}
    )
    assert after[("gemini_http_requests_total", send_route)] == 1
