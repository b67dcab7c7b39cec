"""The admin shows conversations; it never lets an operator write one."""

from __future__ import annotations

import pytest

from accounts.tests.factories import UserFactory
from chatrooms.models import Chatroom, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply():
    chatroom = Chatroom.objects.create(user=UserFactory(), name="Room")
    return Message.objects.create(
        chatroom=chatroom, role=Message.Role.MODEL, status="completed", content="Hello."
    )


def test_messages_cannot_be_added_by_hand(admin_client):
    assert admin_client.get("/admin/chatrooms/message/add/").status_code == 403


def test_a_message_opens_read_only(admin_client, reply):
    page = admin_client.get(f"/admin/chatrooms/message/{reply.pk}/change/")
    assert page.status_code == 200
    assert b'name="content"' not in page.content  # shown, not editable
    posted = admin_client.post(
        f"/admin/chatrooms/message/{reply.pk}/change/", {"content": "Edited", "status": "failed"}
    )
    assert posted.status_code == 403
    reply.refresh_from_db()
    assert (reply.content, reply.status) == ("Hello.", "completed")


def test_view_site_leads_to_the_api_documentation(admin_client):
    page = admin_client.get("/admin/")
    assert b'href="/api/docs/"' in page.content
    assert admin_client.get("/api/docs/").status_code == 200


def test_messages_filter_by_status_and_model(admin_client, reply):
    other = Message.objects.create(
        chatroom=reply.chatroom, role=Message.Role.MODEL, status="failed", model_name="gemini-x"
    )
    Message.objects.filter(pk=reply.pk).update(model_name="gemini-y")

    page = admin_client.get("/admin/chatrooms/message/", {"model_name": "gemini-x"})
    assert list(page.context["cl"].result_list) == [other]
    (choices,) = [f for f in page.context["cl"].filter_specs if f.title == "model"]
    assert [name for name, _ in choices.lookup_choices] == ["gemini-x", "gemini-y"]
    page = admin_client.get("/admin/chatrooms/message/", {"status__exact": "completed"})
    assert list(page.context["cl"].result_list) == [reply]


def test_a_chatroom_shows_its_messages_inline_read_only(admin_client, reply):
    page = admin_client.get(f"/admin/chatrooms/chatroom/{reply.chatroom_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Hello." in html
    assert 'name="messages-0-content"' not in html  # shown, not editable
    assert 'name="messages-0-DELETE"' not in html
