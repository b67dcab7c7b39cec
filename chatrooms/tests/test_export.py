"""GET /api/chatroom/{id}/export: a download of the chatroom, JSON or Markdown."""

from __future__ import annotations

import json

import pytest

from chatrooms.models import Message
from chatrooms.tests.factories import ChatroomFactory, MessageFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return UserFactory.create()


@pytest.fixture
def room(user):
    room = ChatroomFactory.create(user=user, name="Voyage à Kochi", system_prompt="Be brief.")
    MessageFactory.create(chatroom=room, role="user", content="Best month to visit?")
    MessageFactory.create(chatroom=room, role="model", content="December.", superseded=True)
    MessageFactory.create(chatroom=room, role="model", content="## December\nDry and mild.")
    return room


def test_json_is_the_chatroom_and_every_message_in_order_as_an_attachment(user, room):
    response = client_for(user).get(f"/api/chatroom/{room.pk}/export")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="chatroom-')
    assert f"chatroom-{room.pk}-voyage-a-kochi-" in disposition and disposition.endswith('.json"')
    body = json.loads(response.content)
    assert body["chatroom"]["name"] == "Voyage à Kochi"
    assert [m["content"] for m in body["messages"]] == [
        "Best month to visit?",
        "December.",
        "## December\nDry and mild.",
    ]
    assert [m["superseded"] for m in body["messages"]] == [False, True, False]
    assert body["exported_at"].endswith("Z")


def test_markdown_is_a_transcript(user, room):
    response = client_for(user).get(f"/api/chatroom/{room.pk}/export", {"format": "markdown"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"].endswith('.md"')
    text = response.content.decode()
    assert text.startswith("# Voyage à Kochi\n\n> System prompt: Be brief.\n")
    assert "## You · " in text and "Best month to visit?" in text
    assert "(regenerated since)" in text
    assert "## December\nDry and mild." in text


def test_another_users_chatroom_is_404_and_an_unknown_format_400(user, room):
    stranger = client_for(UserFactory.create())
    assert stranger.get(f"/api/chatroom/{room.pk}/export").status_code == 404

    response = client_for(user).get(f"/api/chatroom/{room.pk}/export", {"format": "pdf"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_a_name_cannot_reach_the_header(user):
    room = ChatroomFactory.create(user=user, name='evil"\r\nSet-Cookie: x=1')
    Message.objects.create(chatroom=room, role="user", status="completed", content="hi")

    response = client_for(user).get(f"/api/chatroom/{room.pk}/export")

    disposition = response["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "Set-Cookie" not in disposition
    assert disposition.startswith(f'attachment; filename="chatroom-{room.pk}-evil')
