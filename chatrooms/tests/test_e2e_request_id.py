"""End to end: the request id of a send follows its reply from the web server's request line
into the worker's lines, and comes back in the response's `X-Request-ID`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from chatrooms.tests.factories import ChatroomFactory, UserFactory
from testing.e2e import Stack, wait_until
from testing.fake_gemini import FakeGemini, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _json_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_sends_request_id_is_in_the_web_line_the_worker_lines_and_the_header(
    e2e_stack: Stack, fake_gemini: FakeGemini
):
    e2e_stack.env["LOG_FORMAT"] = "json"
    e2e_stack.start_web()
    worker = e2e_stack.start_worker(name="w1")
    e2e_stack.wait_ready()
    user = UserFactory.create()
    room = ChatroomFactory.create(user=user)
    fake_gemini.script(Reply(text="Traced all the way.", chunks=2))
    client = httpx.Client(
        base_url=e2e_stack.url,
        headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"},
        timeout=20,
    )

    sent = client.post(
        f"/api/chatroom/{room.pk}/message",
        json={"content": "Follow me"},
        headers={"X-Request-ID": "trace-send.42"},
    )
    assert sent.status_code == 202, sent.text
    assert sent.headers["X-Request-ID"] == "trace-send.42"
    reply_id = sent.json()["reply"]["id"]

    def worker_lines() -> list[dict[str, Any]] | None:
        lines = [e for e in _json_lines(worker.log()) if e.get("request_id") == "trace-send.42"]
        return lines if any(e["event"] == "task" for e in lines) else None

    traced = wait_until(worker_lines, timeout=15, what="the reply's task line", watch=[worker])
    task = next(e for e in traced if e["event"] == "task")
    assert (task["task"], task["state"]) == ("chatrooms.reply_generate", "SUCCESS")
    assert any(f"Reply {reply_id}: completed" in e["event"] for e in traced), traced

    web_lines = [e for e in _json_lines(e2e_stack.web.log()) if e["event"] == "request"]  # type: ignore[union-attr]
    send_line = next(e for e in web_lines if e.get("request_id") == "trace-send.42")
    assert send_line["method"] == "POST"
    assert send_line["route"] == "api/chatroom/<int:chatroom_id>/message"
    assert send_line["status"] == 202
    assert send_line["user_id"] == user.pk
    assert send_line["duration_ms"] > 0

    # Another request, with no usable id of its own, gets a new one, in its line too.
    polled = client.get(f"/api/chatroom/{room.pk}", headers={"X-Request-ID": "not usable!"})
    assert polled.status_code == 200
    new_id = polled.headers["X-Request-ID"]
    assert new_id != "not usable!" and len(new_id) == 32
    wait_until(
        lambda: any(
            e["event"] == "request" and e.get("request_id") == new_id
            for e in _json_lines(e2e_stack.web.log())  # type: ignore[union-attr]
        ),
        timeout=5,
        what="the second request's line",
    )
