"""POST /api/chatroom/{id}/message: validation, 202, limits, 409, idempotency, titles."""

from __future__ import annotations

import base64
import datetime as dt
import json
from functools import partial
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, transaction
from rest_framework.test import APIClient

from accounts.models import User
from billing.models import Subscription
from chatrooms.models import Chatroom, IdempotencyRecord, Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.conftest import prompts_counted
from chatrooms.tests.factories import (
    ChatroomFactory,
    MessageFactory,
    UserFactory,
    client_for,
    error_code,
)
from testing.concurrency import InThread, at_once
from usage.models import DailyUsage, pro_slot
from usage.selectors import usage_today

MESSAGE_KEYS = {
    "id", "role", "content", "status", "error", "created_at", "completed_at",
    "model", "usage", "superseded",
}  # fmt: skip


@pytest.fixture
def user(db) -> User:
    return UserFactory.create()


@pytest.fixture
def client(user: User) -> APIClient:
    return client_for(user)


@pytest.fixture
def chatroom(user: User) -> Chatroom:
    return ChatroomFactory.create(user=user, name="Physics")


def _send(client: APIClient, chatroom_id: int, content: Any, **headers: Any) -> Any:
    return client.post(
        f"/api/chatroom/{chatroom_id}/message", {"content": content}, format="json", **headers
    )


def _finish_replies() -> None:
    Message.objects.filter(role="model").update(status=Message.Status.COMPLETED)


def enqueued_reply_ids() -> list[int]:
    """Reply ids of the reply_generate tasks waiting in the Celery broker (no worker runs)."""
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    found: list[int] = []
    for key in broker.scan_iter():
        if broker.type(key) != b"list":
            continue
        for raw in broker.lrange(key, 0, -1):
            message = json.loads(raw)
            if message.get("headers", {}).get("task") != reply_generate.name:
                continue
            args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(args[0] if args else kwargs["reply_id"])
    return found


# --- The 202 answer ---------------------------------------------------------------------------


def test_send_stores_the_message_and_a_pending_reply(
    client: APIClient, user: User, chatroom: Chatroom, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = _send(client, chatroom.pk, "  What is entropy?\n")
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"user_message", "reply", "usage"}
    sent, reply = body["user_message"], body["reply"]
    assert set(sent) == set(reply) == MESSAGE_KEYS
    assert (sent["role"], sent["content"], sent["status"]) == (
        "user",
        "What is entropy?",
        "completed",
    )
    assert sent["completed_at"] is not None
    assert (reply["role"], reply["content"], reply["status"]) == ("model", "", "pending")
    assert reply["error"] is None and reply["completed_at"] is None
    assert reply["id"] > sent["id"]

    today = usage_today()
    resets_at = dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    assert body["usage"] == {
        "limit": 20,
        "used": 1,
        "remaining": 19,
        "resets_at": resets_at.isoformat().replace("+00:00", "Z"),
        "tokens_today": 0,
    }
    assert response["X-RateLimit-Limit"] == "20"
    assert response["X-RateLimit-Remaining"] == "19"
    assert response["X-RateLimit-Reset"] == str(int(resets_at.timestamp()))

    stored = Message.objects.get(pk=reply["id"])
    assert (stored.chatroom_id, stored.usage_day, stored.model_name) == (chatroom.pk, today, "")
    assert prompts_counted(user.pk) == 1
    # Polling the reply shows the same message.
    polled = client.get(f"/api/chatroom/{chatroom.pk}/message/{reply['id']}").json()
    assert polled == reply
    assert enqueued_reply_ids() == [reply["id"]]


def test_the_reply_task_is_enqueued_only_after_commit(
    client: APIClient, chatroom: Chatroom, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _send(client, chatroom.pk, "Hello")
    assert response.status_code == 202
    assert enqueued_reply_ids() == []
    for callback in callbacks:
        callback()
    assert enqueued_reply_ids() == [response.json()["reply"]["id"]]


def test_pro_users_have_no_limit_and_no_rate_limit_headers(
    client: APIClient, user: User, chatroom: Chatroom, settings
) -> None:
    settings.BASIC_DAILY_LIMIT = 1
    Subscription.objects.create(user=user, stripe_subscription_id="sub_x", status="active")
    for _ in range(3):
        response = _send(client, chatroom.pk, "Again")
        assert response.status_code == 202
        _finish_replies()
    assert response.json()["usage"]["limit"] is None
    assert response.json()["usage"]["remaining"] is None
    assert response.json()["usage"]["used"] == 3
    assert "X-RateLimit-Limit" not in response


# --- Validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"content": ""},
        {"content": " \n\t "},
        {"content": "x" * 8001},
        {"content": 123},
        {"content": None},
        {"content": ["hi"]},
        {"content": {"text": "hi"}},
        {"content": True},
    ],
)
def test_invalid_content_is_a_400_that_changes_nothing(
    client: APIClient, user: User, chatroom: Chatroom, payload: dict[str, Any]
) -> None:
    response = client.post(f"/api/chatroom/{chatroom.pk}/message", payload, format="json")
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "content" in response.json()["error"]["details"]["fields"]
    assert not Message.objects.exists()
    assert prompts_counted(user.pk) == 0


def test_content_length_is_counted_after_trimming(client: APIClient, chatroom: Chatroom) -> None:
    response = _send(client, chatroom.pk, "  " + "x" * 8000 + "\n\n")
    assert response.status_code == 202
    assert response.json()["user_message"]["content"] == "x" * 8000


def test_non_json_bodies_are_refused(client: APIClient, user: User, chatroom: Chatroom) -> None:
    path = f"/api/chatroom/{chatroom.pk}/message"
    assert client.post(path, {"content": "hi"}).status_code == 415
    assert client.post(path, "content=hi", content_type="text/plain").status_code == 415
    assert client.post(path, '{"content": ', content_type="application/json").status_code == 400
    assert not Message.objects.exists()
    assert prompts_counted(user.pk) == 0


def test_unknown_chatroom_is_404(client: APIClient, user: User) -> None:
    response = _send(client, 987654, "Hello")
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert prompts_counted(user.pk) == 0


# --- One reply at a time --------------------------------------------------------------------


@pytest.mark.parametrize("status", [Message.Status.PENDING, Message.Status.STREAMING])
def test_a_second_send_while_the_reply_is_in_flight_is_a_409(
    client: APIClient, user: User, chatroom: Chatroom, status: str
) -> None:
    first = _send(client, chatroom.pk, "First")
    reply_id = first.json()["reply"]["id"]
    Message.objects.filter(pk=reply_id).update(status=status)
    second = _send(client, chatroom.pk, "Second")
    assert second.status_code == 409
    assert error_code(second) == "reply_in_progress"
    assert second.json()["error"]["details"] == {"reply_id": reply_id}
    assert Message.objects.count() == 2
    assert prompts_counted(user.pk) == 1
    # Another chatroom is not blocked.
    assert _send(client, ChatroomFactory.create(user=user).pk, "Elsewhere").status_code == 202


@pytest.mark.parametrize(
    "status",
    [
        Message.Status.COMPLETED,
        Message.Status.FAILED,
        Message.Status.CANCELED,
        Message.Status.BLOCKED,
    ],
)
def test_a_finished_reply_allows_the_next_send(
    client: APIClient, chatroom: Chatroom, status: str
) -> None:
    reply_id = _send(client, chatroom.pk, "First").json()["reply"]["id"]
    Message.objects.filter(pk=reply_id).update(status=status)
    assert _send(client, chatroom.pk, "Second").status_code == 202


# --- Daily limit --------------------------------------------------------------------------------


def test_the_prompt_after_the_daily_limit_is_a_429(
    client: APIClient, user: User, chatroom: Chatroom, settings
) -> None:
    settings.BASIC_DAILY_LIMIT = 2
    remaining = []
    for _ in range(2):
        response = _send(client, chatroom.pk, "Hi")
        assert response.status_code == 202
        remaining.append(response["X-RateLimit-Remaining"])
        _finish_replies()
    assert remaining == ["1", "0"]
    refused = _send(client, chatroom.pk, "One more")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "daily_limit_exceeded"
    assert (error["details"]["limit"], error["details"]["used"]) == (2, 2)
    assert error["details"]["resets_at"].endswith("Z")
    assert int(refused["Retry-After"]) > 0
    assert refused["X-RateLimit-Remaining"] == "0"
    assert Message.objects.count() == 4
    assert prompts_counted(user.pk) == 2


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_a_retry_with_the_same_key_replays_the_first_answer(
    client: APIClient, user: User, chatroom: Chatroom, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="key-1")
        # The reply is still pending: a retry must not be taken for a second send (409).
        second = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert second["X-RateLimit-Remaining"] == first["X-RateLimit-Remaining"] == "19"
    assert Message.objects.count() == 2
    assert prompts_counted(user.pk) == 1
    assert enqueued_reply_ids() == [first.json()["reply"]["id"]]


def test_a_new_key_is_a_new_send(client: APIClient, user: User, chatroom: Chatroom) -> None:
    first = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="a")
    _finish_replies()
    second = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="b")
    assert second.status_code == 202
    assert second.json()["reply"]["id"] != first.json()["reply"]["id"]
    assert prompts_counted(user.pk) == 2


def test_the_same_key_for_another_request_is_a_422(
    client: APIClient, user: User, chatroom: Chatroom
) -> None:
    other_room = ChatroomFactory.create(user=user)
    assert _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="k").status_code == 202
    other_content = _send(client, chatroom.pk, "Goodbye", HTTP_IDEMPOTENCY_KEY="k")
    assert other_content.status_code == 422
    assert error_code(other_content) == "idempotency_key_mismatch"
    other_chatroom = _send(client, other_room.pk, "Hello", HTTP_IDEMPOTENCY_KEY="k")
    assert other_chatroom.status_code == 422
    assert Message.objects.count() == 2
    assert prompts_counted(user.pk) == 1


def test_keys_belong_to_one_user(client: APIClient, chatroom: Chatroom) -> None:
    mine = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="shared")
    stranger = UserFactory.create()
    theirs = _send(
        client_for(stranger),
        ChatroomFactory.create(user=stranger).pk,
        "Hello",
        HTTP_IDEMPOTENCY_KEY="shared",
    )
    assert theirs.status_code == 202
    assert theirs.json()["reply"]["id"] != mine.json()["reply"]["id"]
    assert prompts_counted(stranger.pk) == 1


def test_an_error_is_not_remembered_for_the_key(
    client: APIClient, user: User, chatroom: Chatroom
) -> None:
    _send(client, chatroom.pk, "First")
    busy = _send(client, chatroom.pk, "Second", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert busy.status_code == 409
    assert not IdempotencyRecord.objects.exists()
    _finish_replies()
    retried = _send(client, chatroom.pk, "Second", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert retried.status_code == 202
    assert retried.json()["user_message"]["content"] == "Second"
    assert prompts_counted(user.pk) == 2


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_a_bad_key_is_a_400(client: APIClient, user: User, chatroom: Chatroom, key: str) -> None:
    response = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert prompts_counted(user.pk) == 0


def test_the_longest_key_is_accepted(client: APIClient, chatroom: Chatroom) -> None:
    response = _send(client, chatroom.pk, "Hello", HTTP_IDEMPOTENCY_KEY="k" * 255)
    assert response.status_code == 202


# --- Titles --------------------------------------------------------------------------------------


def test_the_first_message_names_an_unnamed_chatroom(
    client: APIClient, user: User, django_capture_on_commit_callbacks
) -> None:
    chatroom_id = client.post("/api/chatroom", {}, format="json").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get("/api/chatroom")["X-Cache"] == "MISS"
        assert client.get("/api/chatroom")["X-Cache"] == "HIT"
        content = "Explain how black holes evaporate through Hawking radiation, in simple words"
        _send(client, chatroom_id, content)
    title = "Explain how black holes evaporate through Hawking…"
    assert Chatroom.objects.get(pk=chatroom_id).name == title
    listed = client.get("/api/chatroom")
    assert listed["X-Cache"] == "MISS"
    assert listed.json()["results"][0]["name"] == title
    assert client.get(f"/api/chatroom/{chatroom_id}").json()["name"] == title
    # Later messages do not rename it.
    _finish_replies()
    _send(client, chatroom_id, "Something else entirely")
    assert Chatroom.objects.get(pk=chatroom_id).name == title


def test_a_named_chatroom_keeps_its_name(client: APIClient, chatroom: Chatroom) -> None:
    _send(client, chatroom.pk, "Tell me about lasers")
    chatroom.refresh_from_db()
    assert chatroom.name == "Physics"


# --- Query counts ------------------------------------------------------------------------------


@pytest.mark.parametrize("history", [0, 200])
def test_send_queries_do_not_grow_with_history(
    client: APIClient, chatroom: Chatroom, history: int, django_assert_max_num_queries
) -> None:
    MessageFactory.create_batch(history, chatroom=chatroom)
    # The transaction's begin and end (a savepoint here), the lock, one INSERT of both
    # messages that checks the last reply first, and the count.
    with django_assert_max_num_queries(5):
        assert _send(client, chatroom.pk, "Plain").status_code == 202
    _finish_replies()
    # The key's claim and store wrap the send's own transaction (a savepoint within it).
    with django_assert_max_num_queries(9):
        response = _send(client, chatroom.pk, "Keyed", HTTP_IDEMPOTENCY_KEY="q")
        assert response.status_code == 202
    with django_assert_max_num_queries(5):
        assert _send(client, chatroom.pk, "Keyed", HTTP_IDEMPOTENCY_KEY="q").status_code == 202


# --- Concurrency ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_sends_admit_exactly_the_prompts_left(settings) -> None:
    settings.BASIC_DAILY_LIMIT = 20
    user = UserFactory.create()
    DailyUsage.objects.create(user=user, day=usage_today(), count=15)
    chatrooms = [ChatroomFactory.create(user=user) for _ in range(50)]
    clients = [client_for(user) for _ in chatrooms]
    responses = at_once(
        [
            partial(_send, client, room.pk, "At the same time")
            for client, room in zip(clients, chatrooms, strict=True)
        ]
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [202] * 5 + [429] * 45
    refused = [response for response in responses if response.status_code == 429]
    assert {error_code(response) for response in refused} == {"daily_limit_exceeded"}
    admitted = [response.json() for response in responses if response.status_code == 202]
    assert sorted(body["usage"]["used"] for body in admitted) == [16, 17, 18, 19, 20]
    assert DailyUsage.objects.get(user=user).count == 20
    assert Message.objects.filter(role="model", status="pending").count() == 5
    assert sorted(enqueued_reply_ids()) == sorted(body["reply"]["id"] for body in admitted)


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_send_once() -> None:
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)

    def send() -> tuple[int, Any]:
        response = _send(client_for(user), chatroom.pk, "Once", HTTP_IDEMPOTENCY_KEY="same")
        return response.status_code, response.json()

    bodies = at_once([send] * 10)
    assert {status for status, _ in bodies} == {202}
    assert len({json.dumps(body, sort_keys=True) for _, body in bodies}) == 1
    assert Message.objects.count() == 2
    assert DailyUsage.objects.get(user=user).count == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_sends_to_one_chatroom_start_one_reply() -> None:
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)

    def send(number: int) -> int:
        return _send(client_for(user), chatroom.pk, f"Message {number}").status_code

    statuses = at_once([partial(send, number) for number in range(8)])
    assert sorted(statuses) == [202] + [409] * 7
    assert Message.objects.filter(role="model").count() == 1
    assert DailyUsage.objects.get(user=user).count == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("before", "committed", "expected"),
    [
        (Message.Status.COMPLETED, Message.Status.PENDING, 409),
        (Message.Status.STREAMING, Message.Status.COMPLETED, 202),
    ],
    ids=["a reply started", "the reply finished"],
)
def test_a_send_waiting_for_the_chatroom_sees_what_the_lock_holder_committed(
    before: str, committed: str, expected: int
) -> None:
    """The in-flight check reads after the chatroom's lock is granted: a reply put in flight,
    or finished, by the transaction the send waited for counts."""
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)
    last = MessageFactory.create(chatroom=chatroom, role=Message.Role.MODEL, status=before)
    with transaction.atomic():
        Chatroom.objects.select_for_update().get(pk=chatroom.pk)
        sending = InThread(lambda: _send(client_for(user), chatroom.pk, "After the holder"))
        sending.wait_until_blocked()
        Message.objects.filter(pk=last.pk).update(status=Message.Status.COMPLETED)
        latest = MessageFactory.create(chatroom=chatroom, role=Message.Role.MODEL, status=committed)
    response = sending.join()
    assert response.status_code == expected, response.content
    if expected == 409:
        assert response.json()["error"]["details"]["reply_id"] == latest.pk
        assert Message.objects.filter(chatroom=chatroom).count() == 2
    else:
        assert Message.objects.filter(chatroom=chatroom).count() == 4


def _counted_row(user: User, chatroom: Chatroom, *, pro: bool) -> DailyUsage:
    """Today's row a send in `chatroom` counts its prompt on, with 4 prompts already."""
    if pro:
        Subscription.objects.create(user=user, stripe_subscription_id="sub_x", status="active")
    slot = pro_slot(chatroom.pk) if pro else 0
    return DailyUsage.objects.create(user=user, day=usage_today(), slot=slot, count=4)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pro", [True, False], ids=["pro", "basic"])
def test_a_send_counts_its_prompt_last_in_its_transaction(pro: bool) -> None:
    """Another transaction holds the row the send counts on: the send waits with nothing
    committed (its messages and its count commit together), then answers with the count."""
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)
    row = _counted_row(user, chatroom, pro=pro)
    with transaction.atomic():
        DailyUsage.objects.select_for_update().get(pk=row.pk)
        sending = InThread(lambda: _send(client_for(user), chatroom.pk, "Waiting for the row"))
        sending.wait_until_blocked()
        assert not Message.objects.filter(chatroom=chatroom).exists()
    response = sending.join()
    assert response.status_code == 202
    assert response.json()["usage"]["used"] == 5
    assert prompts_counted(user.pk) == 5


@pytest.mark.django_db(transaction=True)
def test_a_pro_send_does_not_wait_for_the_count_of_a_chatroom_of_another_slot() -> None:
    """One Pro user's concurrent sends count on their chatrooms' slots: a send whose slot's
    row is held by another transaction does not hold up a send in a chatroom of another
    slot, whose answer counts the held row's prompts too."""
    user = UserFactory.create()
    waiting_room, other_room = ChatroomFactory.create_batch(2, user=user)
    assert pro_slot(waiting_room.pk) != pro_slot(other_room.pk)
    row = _counted_row(user, waiting_room, pro=True)
    with transaction.atomic():
        DailyUsage.objects.select_for_update().get(pk=row.pk)
        # On a connection of its own: this one holds the lock.
        sending = InThread(lambda: _send(client_for(user), other_room.pk, "Not waiting"))
        response = sending.join(timeout=5)
    assert response.status_code == 202
    assert response.json()["usage"]["used"] == 5
    assert response.json()["usage"]["limit"] is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", [None, "k-cut"], ids=["no key", "idempotency key"])
@pytest.mark.parametrize("pro", [True, False], ids=["pro", "basic"])
def test_a_send_whose_count_fails_stores_nothing_and_can_be_sent_again(
    pro: bool, key: str | None
) -> None:
    """The send's connection cut while its count waits for the row: it answers 503 and
    leaves no message, no key and no count behind, so the client's retry (with the same key,
    if any) is a first send."""
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)
    row = _counted_row(user, chatroom, pro=pro)
    client = client_for(user)
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    with transaction.atomic():
        DailyUsage.objects.select_for_update().get(pk=row.pk)
        sending = InThread(lambda: _send(client, chatroom.pk, "Cut short", **headers))
        sending.wait_until_blocked()  # stored in the send's transaction, waiting to count
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [sending.pid])
    response = sending.join()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert not Message.objects.filter(chatroom=chatroom).exists()
    assert not IdempotencyRecord.objects.filter(user=user).exists()
    assert prompts_counted(user.pk) == 4

    retried = _send(client, chatroom.pk, "Cut short", **headers)
    assert retried.status_code == 202
    assert retried.json()["usage"]["used"] == 5
    assert prompts_counted(user.pk) == 5
    assert Message.objects.filter(chatroom=chatroom).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_pro_send_with_a_key_and_a_regenerate_are_counted_once_each() -> None:
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)
    Subscription.objects.create(user=user, stripe_subscription_id="sub_x", status="active")
    client = client_for(user)
    sends = [_send(client, chatroom.pk, "Once", HTTP_IDEMPOTENCY_KEY="k1") for _ in range(3)]
    assert {response.status_code for response in sends} == {202}
    assert len({response.content for response in sends}) == 1
    assert prompts_counted(user.pk) == 1
    reply_id = sends[0].json()["reply"]["id"]
    _finish_replies()
    regenerated = client.post(f"/api/chatroom/{chatroom.pk}/message/{reply_id}/regenerate")
    assert regenerated.status_code == 202
    assert regenerated.json()["usage"]["used"] == 2
    assert regenerated.json()["usage"]["limit"] is None
    assert prompts_counted(user.pk) == 2


def test_a_prompt_and_its_reply_are_stamped_with_the_same_instant(api_client, db):
    from chatrooms.models import Chatroom

    user = UserFactory()
    api_client.force_authenticate(user)
    room = Chatroom.objects.create(user=user)
    body = api_client.post(
        f"/api/chatroom/{room.pk}/message", {"content": "Hi"}, format="json"
    ).json()
    prompt = body["user_message"]
    assert prompt["created_at"] == prompt["completed_at"] == body["reply"]["created_at"]
