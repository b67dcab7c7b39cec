"""Fixtures of the reply pipeline tests: the fake Gemini, conversations, stream readers."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from django.conf import settings as django_settings
from django.db.models import F, Sum

from accounts.models import User
from chatrooms import replies, streaming
from chatrooms.models import Chatroom, Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.factories import ChatroomFactory, MessageFactory, UserFactory
from core.db import db_connection_release
from testing.e2e import Stack, process_env
from testing.fake_gemini import FakeGemini
from usage.models import DailyUsage
from usage.selectors import usage_today


@pytest.fixture
def fake_gemini(settings: Any) -> Iterator[FakeGemini]:
    """The real google-genai client talking to a local fake of the Gemini API."""
    with FakeGemini() as fake:
        settings.GEMINI_API_KEY = fake.api_key
        settings.GEMINI_BASE_URL = fake.url
        settings.GEMINI_TIMEOUT_SECONDS = 5
        yield fake


@pytest.fixture
def pipeline_user(db: None) -> User:
    return UserFactory.create()


@pytest.fixture
def pipeline_chatroom(pipeline_user: User) -> Chatroom:
    return ChatroomFactory.create(user=pipeline_user, system_prompt="You are a terse physicist.")


ExchangeMaker = Callable[..., Message]


@pytest.fixture
def make_exchange(pipeline_chatroom: Chatroom) -> ExchangeMaker:
    """Store a user message and its `pending` reply, counting the prompt, as a send does."""

    def make(prompt: str = "What is a photon?", chatroom: Chatroom | None = None) -> Message:
        room = chatroom or pipeline_chatroom
        MessageFactory.create(chatroom=room, role=Message.Role.USER, content=prompt)
        day = usage_today()
        usage, _ = DailyUsage.objects.get_or_create(user_id=room.user_id, day=day, slot=0)
        DailyUsage.objects.filter(pk=usage.pk).update(count=F("count") + 1)
        return Message.objects.create(
            chatroom=room, role=Message.Role.MODEL, status=Message.Status.PENDING, usage_day=day
        )

    return make


@pytest.fixture
def sweeping() -> Iterator[None]:
    """The beat sweep every 0.1 s, and a second worker running at once whatever it finds:
    a reply whose lease lapses is generated again."""
    stop = threading.Event()
    others: list[threading.Thread] = []

    def sweep() -> None:
        while not stop.wait(0.1):
            for reply_id in replies.replies_sweep():
                other = threading.Thread(target=reply_generate.apply, args=([reply_id],))
                other.start()
                others.append(other)
            db_connection_release()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        yield
    finally:
        stop.set()
        sweeper.join(timeout=5)
        for other in others:
            other.join(timeout=10)


def prompts_counted(user_id: int) -> int:
    """Today's count of the user: all its rows (usage.models.PRO_SLOTS)."""
    rows = DailyUsage.objects.filter(user_id=user_id, day=usage_today())
    return rows.aggregate(total=Sum("count"))["total"] or 0


@pytest.fixture
def counted() -> Callable[[int], int]:
    """Today's prompt count of a user."""
    return prompts_counted


def stream_entries(reply_id: int) -> list[dict[str, Any]]:
    """The reply's Redis stream as plain dicts (`done` messages decoded)."""
    entries = cast(
        list[streaming.Entry], streaming.redis_client().xrange(streaming.events_key(reply_id))
    )
    events = []
    for _, fields in entries:
        event: dict[str, Any] = dict(fields)
        if "message" in event:
            event["message"] = json.loads(event["message"])
        events.append(event)
    return events


@pytest.fixture
def published() -> Callable[[int], list[dict[str, Any]]]:
    return stream_entries


def model_contents(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each turn a recorded Gemini request carried."""
    return [
        (content["role"], "".join(part.get("text", "") for part in content["parts"]))
        for content in request["body"]["contents"]
    ]


def system_instruction(request: dict[str, Any]) -> str | None:
    instruction = request["body"].get("systemInstruction") or request["body"].get(
        "system_instruction"
    )
    if instruction is None:
        return None
    return "".join(part.get("text", "") for part in instruction["parts"])


def broker_reply_ids() -> list[int]:
    """Reply ids of the `chatrooms.reply_generate` messages waiting in the broker's queue."""
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    found = []
    for raw in broker.lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "chatrooms.reply_generate":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(int(args[0]))
    return sorted(found)


# --- End-to-end: real uvicorn and Celery worker processes -------------------------------------

E2E_SETTINGS = {
    # Short leases and a fast sweep, so recovering from a killed worker takes seconds.
    "REPLY_LEASE_SECONDS": 2,
    "AI_PENDING_SWEEP_INTERVAL_SECONDS": 1,
    "AI_PENDING_SWEEP_AGE_SECONDS": 1,
    "AI_RETRY_BACKOFF_SECONDS": 1,
    "GEMINI_TIMEOUT_SECONDS": 10,
}


@pytest.fixture
def e2e_stack(transactional_db: None, tmp_path: Path, fake_gemini: FakeGemini) -> Iterator[Stack]:
    """Processes on the test database and the fake Gemini; started by the test, all stopped
    on teardown, before pytest-django flushes or drops the database."""
    env = process_env(
        GEMINI_API_KEY=fake_gemini.api_key, GEMINI_BASE_URL=fake_gemini.url, **E2E_SETTINGS
    )
    stack = Stack(env=env, log_dir=tmp_path)
    try:
        yield stack
    finally:
        stack.close()
