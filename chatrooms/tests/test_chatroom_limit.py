"""MAX_CHATROOMS_PER_USER: the next create is 409 chatroom_limit_reached, even when racing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from accounts.models import User
from chatrooms.errors import ChatroomLimitReached
from chatrooms.models import Chatroom
from chatrooms.services import chatroom_create, message_send
from chatrooms.tests.factories import ChatroomFactory, UserFactory, client_for, error_code
from testing.concurrency import at_once


def _create_or_refusal(user: User) -> Chatroom | ChatroomLimitReached:
    try:
        return chatroom_create(user=user, name="Racing")
    except ChatroomLimitReached as refusal:
        return refusal


@pytest.mark.django_db
def test_the_create_past_the_limit_is_refused_and_others_are_not(settings) -> None:
    settings.MAX_CHATROOMS_PER_USER = 3
    user = UserFactory.create()
    ChatroomFactory.create_batch(2, user=user)
    client = client_for(user)

    assert client.post("/api/chatroom", {"name": "Third"}, format="json").status_code == 201
    refused = client.post("/api/chatroom", {"name": "Fourth"}, format="json")

    assert refused.status_code == 409
    assert error_code(refused) == "chatroom_limit_reached"
    assert refused.json()["error"]["details"] == {"limit": 3}
    assert Chatroom.objects.filter(user=user).count() == 3
    # Another user is not held to this one's count.
    other = client_for(UserFactory.create())
    assert other.post("/api/chatroom", {}, format="json").status_code == 201
    # Deleting one makes room again.
    oldest = Chatroom.objects.filter(user=user).order_by("id").first()
    assert oldest is not None
    assert client.delete(f"/api/chatroom/{oldest.pk}").status_code == 204
    assert client.post("/api/chatroom", {"name": "Again"}, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_creates_at_the_same_instant_cannot_pass_the_limit(settings) -> None:
    settings.MAX_CHATROOMS_PER_USER = 3
    user = UserFactory.create()
    ChatroomFactory.create(user=user)

    results = at_once([lambda: _create_or_refusal(user)] * 10, connect_first=True)

    created = [result for result in results if isinstance(result, Chatroom)]
    refused = [result for result in results if isinstance(result, ChatroomLimitReached)]
    assert (len(created), len(refused)) == (2, 8), results
    assert Chatroom.objects.filter(user=user).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_create_in_progress_does_not_hold_up_a_send() -> None:
    """The cap's lock on the user's row is one that rows referencing the user do not wait for."""
    user = UserFactory.create()
    chatroom = ChatroomFactory.create(user=user)
    sent: list[object] = []

    def send() -> None:
        try:
            sent.append(message_send(user=user, chatroom_id=chatroom.pk, content="Hello"))
        finally:
            connection.close()

    with transaction.atomic():
        chatroom_create(user=user, name="Still open")
        sender = threading.Thread(target=send)
        sender.start()
        sender.join(timeout=5)
        assert not sender.is_alive()
    assert len(sent) == 1
