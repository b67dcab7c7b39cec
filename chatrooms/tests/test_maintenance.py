"""The Idempotency-Key replay window: expiry on the send path, the hourly prune and its command."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import User
from chatrooms.models import Chatroom, IdempotencyRecord, Message
from chatrooms.tasks import idempotency_records_prune
from chatrooms.tests.factories import ChatroomFactory, UserFactory, client_for
from gemini_clone.celery import app as celery_app
from testing.concurrency import at_once
from usage.models import DailyUsage

HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture
def user(db: None) -> User:
    return UserFactory.create()


@pytest.fixture
def client(user: User) -> APIClient:
    return client_for(user)


@pytest.fixture
def chatroom(user: User) -> Chatroom:
    return ChatroomFactory.create(user=user, name="Physics")


@pytest.fixture
def clock(time_machine: Any, settings: Any) -> Any:
    settings.IDEMPOTENCY_KEY_RETENTION_SECONDS = DAY
    time_machine.move_to("2030-01-15 10:00:00+00:00", tick=False)
    return time_machine


def _send(client: APIClient, chatroom: Chatroom, content: str, key: str) -> Any:
    return client.post(
        f"/api/chatroom/{chatroom.pk}/message",
        {"content": content},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def _finish_replies() -> None:
    Message.objects.filter(role="model").update(status=Message.Status.COMPLETED)


def _prompts_counted(user: User) -> int:
    return sum(DailyUsage.objects.filter(user=user).values_list("count", flat=True))


def _keys() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("key", flat=True))


def test_a_retry_inside_the_window_is_replayed(
    client: APIClient, user: User, chatroom: Chatroom, clock: Any
) -> None:
    first = _send(client, chatroom, "Hello", "k")
    _finish_replies()
    clock.shift(DAY - 1)
    retry = _send(client, chatroom, "Hello", "k")
    assert retry.status_code == 202
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert _prompts_counted(user) == 1


def test_a_retry_after_the_window_is_a_new_send(
    client: APIClient, user: User, chatroom: Chatroom, clock: Any
) -> None:
    first = _send(client, chatroom, "Hello", "k")
    _finish_replies()
    clock.shift(DAY + 1)
    # The expired record is still stored (no prune ran), yet it is not replayed.
    assert _keys() == {"k"}
    again = _send(client, chatroom, "Hello", "k")
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again
    assert again.json()["reply"]["id"] != first.json()["reply"]["id"]
    assert Message.objects.filter(chatroom=chatroom).count() == 4
    assert _prompts_counted(user) == 2

    # The key now stands for the new send, replayed in its own window.
    replay = _send(client, chatroom, "Hello", "k")
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == again.json()
    assert IdempotencyRecord.objects.count() == 1


def test_an_expired_key_may_carry_another_request(
    client: APIClient, user: User, chatroom: Chatroom, clock: Any
) -> None:
    _send(client, chatroom, "Hello", "k")
    _finish_replies()
    other_room = ChatroomFactory.create(user=user)
    clock.shift(HOUR)
    assert _send(client, other_room, "Goodbye", "k").status_code == 422
    clock.shift(DAY)
    reused = _send(client, other_room, "Goodbye", "k")
    assert reused.status_code == 202
    assert reused.json()["user_message"]["content"] == "Goodbye"


def test_the_window_follows_the_setting(
    client: APIClient, user: User, chatroom: Chatroom, clock: Any, settings: Any
) -> None:
    settings.IDEMPOTENCY_KEY_RETENTION_SECONDS = 60
    first = _send(client, chatroom, "Hello", "k")
    _finish_replies()
    clock.shift(59)
    assert _send(client, chatroom, "Hello", "k").json() == first.json()
    clock.shift(2)
    assert _send(client, chatroom, "Hello", "k").json() != first.json()
    assert _prompts_counted(user) == 2


def test_a_refused_send_with_an_expired_key_leaves_the_key_free(
    client: APIClient, user: User, chatroom: Chatroom, clock: Any
) -> None:
    first = _send(client, chatroom, "Hello", "k")
    clock.shift(DAY + 1)
    # The first reply is still pending, so this is a second send, not a replay: refused.
    busy = _send(client, chatroom, "Hello", "k")
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "reply_in_progress"
    _finish_replies()
    retried = _send(client, chatroom, "Hello", "k")
    assert retried.status_code == 202
    assert retried.json()["reply"]["id"] != first.json()["reply"]["id"]
    assert _prompts_counted(user) == 2


@pytest.mark.django_db(transaction=True)
def test_simultaneous_retries_with_an_expired_key_send_once(clock: Any) -> None:
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)
    first = _send(client_for(user), chatroom, "Again", "same")
    _finish_replies()
    clock.shift(DAY + 1)

    def send() -> tuple[int, Any]:
        response = _send(client_for(user), chatroom, "Again", "same")
        return response.status_code, response.json()

    answers = at_once([send] * 8)

    assert {status for status, _ in answers} == {202}
    bodies = {json.dumps(body, sort_keys=True) for _, body in answers}
    assert len(bodies) == 1
    assert json.loads(bodies.pop())["reply"]["id"] != first.json()["reply"]["id"]
    assert Message.objects.count() == 4
    assert _prompts_counted(user) == 2


def test_the_prune_deletes_expired_records_and_keeps_replayable_ones(
    client: APIClient, user: User, chatroom: Chatroom, clock: Any
) -> None:
    _send(client, chatroom, "One", "old")
    _finish_replies()
    clock.shift(2 * HOUR)
    kept = _send(client, chatroom, "Two", "recent")
    _finish_replies()
    clock.shift(DAY - HOUR)  # "old" is 25 h old, "recent" 23 h

    out = StringIO()
    call_command("idempotency_records_prune", stdout=out)
    assert out.getvalue().strip() == "Deleted 1 idempotency records."
    assert _keys() == {"recent"}
    assert _send(client, chatroom, "Two", "recent").json() == kept.json()

    out = StringIO()
    call_command("idempotency_records_prune", stdout=out)
    assert out.getvalue().strip() == "Deleted 0 idempotency records."


def test_the_beat_task_prunes_with_the_configured_window(
    client: APIClient, chatroom: Chatroom, clock: Any, settings: Any
) -> None:
    settings.IDEMPOTENCY_KEY_RETENTION_SECONDS = 2 * HOUR
    _send(client, chatroom, "One", "a")
    _finish_replies()
    clock.shift(HOUR)
    _send(client, chatroom, "Two", "b")
    clock.shift(HOUR + 1)

    assert idempotency_records_prune.apply().get() == 1
    assert _keys() == {"b"}
    assert idempotency_records_prune.time_limit is not None


def test_the_prune_is_scheduled_hourly_as_a_registered_task() -> None:
    celery_app.loader.import_default_modules()
    entry = celery_app.conf.beat_schedule["idempotency-records-prune"]
    assert entry["task"] == idempotency_records_prune.name
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] == HOUR
