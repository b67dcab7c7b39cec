"""POST …/message/{id}/regenerate: a new reply to the last reply's prompt, counted like a
send; the old reply stays readable, `superseded`, and leaves the model's history."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.conftest import broker_reply_ids, model_contents, prompts_counted
from chatrooms.tests.factories import ChatroomFactory, UserFactory, client_for
from testing.fake_gemini import Reply

pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


@pytest.fixture
def user():
    return UserFactory.create()


@pytest.fixture
def client(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def room(user):
    return ChatroomFactory.create(user=user, system_prompt="")


def _send(client: APIClient, room_id: int, content: str) -> int:
    response = client.post(f"/api/chatroom/{room_id}/message", {"content": content}, format="json")
    assert response.status_code == 202, response.content
    return int(response.json()["reply"]["id"])


def _regenerate(client: APIClient, room_id: int, message_id: int):
    return client.post(f"/api/chatroom/{room_id}/message/{message_id}/regenerate")


def _generate(reply_id: int) -> Message:
    reply_generate.apply(args=[reply_id])
    return Message.objects.get(pk=reply_id)


def _counted(user) -> int:
    return prompts_counted(user.pk)


def test_a_new_reply_to_the_same_prompt_the_old_one_superseded_and_out_of_the_history(
    fake_gemini, client, user, room
):
    fake_gemini.script(
        Reply(text="Paris."),
        Reply(text="Berlin."),
        Reply(text="It is Paris, the capital of France."),
        Reply(text="About two million."),
    )
    _generate(_send(client, room.pk, "Capital of Germany?"))
    old_id = _send(client, room.pk, "Capital of France?")
    assert _generate(old_id).content == "Berlin."  # a poor answer: ask again

    response = _regenerate(client, room.pk, old_id)

    assert response.status_code == 202, response.content
    body = response.json()
    new_id = body["reply"]["id"]
    assert new_id > old_id
    assert (body["reply"]["status"], body["reply"]["superseded"]) == ("pending", False)
    assert response["Location"] == f"/api/chatroom/{room.pk}/message/{new_id}"
    assert body["usage"]["used"] == 3 == _counted(user)
    assert response["X-RateLimit-Remaining"] == str(body["usage"]["remaining"])
    assert new_id in broker_reply_ids()

    regenerated = _generate(new_id)
    assert regenerated.content == "It is Paris, the capital of France."
    # The model saw the prompt once, without the superseded answer.
    assert model_contents(fake_gemini.requests[-1]) == [
        ("user", "Capital of Germany?"),
        ("model", "Paris."),
        ("user", "Capital of France?"),
    ]
    old = client.get(f"/api/chatroom/{room.pk}/message/{old_id}").json()
    assert (old["content"], old["superseded"]) == ("Berlin.", True)
    detail = client.get(f"/api/chatroom/{room.pk}").json()
    assert [(m["id"], m["superseded"]) for m in detail["messages"]][-2:] == [
        (old_id, True),
        (new_id, False),
    ]
    # The next prompt's history goes on from the regenerated reply.
    _generate(_send(client, room.pk, "How many people live there?"))
    assert model_contents(fake_gemini.requests[-1])[-3:] == [
        ("user", "Capital of France?"),
        ("model", "It is Paris, the capital of France."),
        ("user", "How many people live there?"),
    ]


def test_only_the_last_reply_and_a_retried_regenerate_counts_nothing(
    fake_gemini, client, user, room
):
    fake_gemini.script(Reply(text="One."), Reply(text="Two."), Reply(text="Two, again."))
    first = _send(client, room.pk, "First?")
    _generate(first)
    second = _send(client, room.pk, "Second?")
    _generate(second)
    prompt = Message.objects.get(chatroom=room, role="user", content="Second?").pk

    for not_last in (first, prompt):
        refused = _regenerate(client, room.pk, not_last)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "not_last_reply"

    assert _regenerate(client, room.pk, second).status_code == 202
    counted = _counted(user)
    retried = _regenerate(client, room.pk, second)  # the client did not see the first 202
    assert (retried.status_code, retried.json()["error"]["code"]) == (409, "not_last_reply")
    assert _counted(user) == counted


def test_refused_while_the_reply_is_in_flight(client, room):
    reply_id = _send(client, room.pk, "Still thinking?")  # pending: no worker runs here

    refused = _regenerate(client, room.pk, reply_id)

    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "reply_in_progress",
        "message": refused.json()["error"]["message"],
        "details": {"reply_id": reply_id},
    }
    assert Message.objects.filter(chatroom=room, role="model").count() == 1


def test_counted_against_the_daily_limit(fake_gemini, settings, client, user, room):
    settings.BASIC_DAILY_LIMIT = 1
    fake_gemini.script(Reply(text="Once."))
    reply_id = _send(client, room.pk, "Only one?")
    _generate(reply_id)

    refused = _regenerate(client, room.pk, reply_id)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "daily_limit_exceeded"
    assert refused["Retry-After"]
    assert not Message.objects.get(pk=reply_id).superseded  # rolled back with the refusal
    assert Message.objects.filter(chatroom=room, role="model").count() == 1


def test_another_users_reply_is_not_found(fake_gemini, client, room):
    stranger = UserFactory.create()
    fake_gemini.script(Reply(text="Mine."))
    reply_id = _send(client, room.pk, "Mine?")
    _generate(reply_id)

    for path_room in (room.pk, ChatroomFactory.create(user=stranger).pk):
        response = _regenerate(client_for(stranger), path_room, reply_id)
        assert response.status_code == 404, response.content
    assert _regenerate(client, room.pk, 10**9).status_code == 404
    assert not Message.objects.get(pk=reply_id).superseded
