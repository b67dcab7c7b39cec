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
