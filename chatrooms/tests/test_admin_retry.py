"""The admin's "retry the failed reply": through `services.reply_retry`, back to `pending` and
enqueued, refused while the chatroom has another reply in flight; the worker then generates
it afresh, with a full set of retries."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from chatrooms.models import Message
from chatrooms.tasks import reply_generate
from chatrooms.tests.conftest import broker_reply_ids
from chatrooms.tests.factories import UserFactory, client_for, error_code
from testing.fake_gemini import Reply

# The worker gives its database connection back after each step, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status
URL = "/admin/chatrooms/message/"


@pytest.fixture
def operator() -> Client:
    browser = Client()
    browser.force_login(UserFactory(is_staff=True, is_superuser=True, phone="+919600000001"))
    return browser


def _retry(operator: Client, *replies: Message) -> str:
    page = operator.post(
        URL,
        {"action": "retry_reply", "_selected_action": [reply.pk for reply in replies]},
        follow=True,
    )
    assert page.status_code == 200
    return " ".join(str(message) for message in page.context["messages"])


def _failed(reply: Message, **fields: object) -> Message:
    Message.objects.filter(pk=reply.pk).update(
        status=Status.FAILED, error_code="ai_unavailable", error_message="Unavailable.", **fields
    )
    reply.refresh_from_db()
    return reply


def test_a_failed_reply_is_retried_and_completes_with_fresh_retries(
    operator, fake_gemini, make_exchange, settings, published, counted, pipeline_user
):
    settings.AI_MAX_RETRIES = 1
    fake_gemini.script(Reply(status=503), Reply(status=503))
    reply = make_exchange()
    reply_generate.apply(args=[reply.pk])
    reply.refresh_from_db()
    assert (reply.status, reply.attempts) == (Status.FAILED, 2)
    assert counted(pipeline_user.pk) == 0  # the failure gave the prompt back

    said = _retry(operator, reply)

    reply.refresh_from_db()
    assert "Retried" in said
    assert (reply.status, reply.error_code, reply.completed_at) == (Status.PENDING, "", None)
    assert broker_reply_ids() == [reply.pk]  # enqueued, on commit
    assert published(reply.pk) == []  # the failed attempt's stream is gone
    # One failure more is retried (the limit counts from the operator's retry), then done.
    fake_gemini.script(Reply(status=503), Reply(text="Here it is.", chunks=2))
    reply_generate.apply(args=[reply.pk])
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.attempts) == (Status.COMPLETED, "Here it is.", 4)
    assert [e["attempt"] for e in published(reply.pk) if e["type"] == "start"] == ["3", "4"]
    assert counted(pipeline_user.pk) == 0  # the retry was free, and counted nothing twice


def test_a_retried_reply_that_fails_again_refunds_nothing(
    operator, fake_gemini, make_exchange, settings, counted, pipeline_user
):
    settings.AI_MAX_RETRIES = 0
    reply = _failed(make_exchange(), content="Half an")  # text streamed: still counted
    assert counted(pipeline_user.pk) == 1

    _retry(operator, reply)
    fake_gemini.script(Reply(status=503))
    reply_generate.apply(args=[reply.pk])

    reply.refresh_from_db()
    assert reply.status == Status.FAILED
    assert counted(pipeline_user.pk) == 1  # one refund at most per prompt


def test_the_retry_is_refused_while_another_reply_of_the_chatroom_is_in_flight(
    operator, make_exchange
):
    failed = _failed(make_exchange())
    pending = make_exchange()  # a newer send, still in flight

    said = _retry(operator, failed)

    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    assert f"reply {pending.pk} of its chatroom is still in flight" in said
    assert broker_reply_ids() == []


def test_only_a_failed_reply_that_is_the_chatrooms_latest_is_retried(operator, make_exchange):
    older = _failed(make_exchange())
    newer = make_exchange()
    Message.objects.filter(pk=newer.pk).update(status=Status.COMPLETED)
    prompt = Message.objects.filter(role=Message.Role.USER).first()
    assert prompt is not None

    said = _retry(operator, older, newer, prompt)

    assert said.count("not retried") == 3
    assert Message.objects.get(pk=older.pk).status == Status.FAILED
    assert Message.objects.get(pk=newer.pk).status == Status.COMPLETED
    assert broker_reply_ids() == []


def test_a_send_waits_for_the_retried_reply(operator, make_exchange, pipeline_user):
    """The retried reply is in flight like any other: the chatroom's 409 rule holds."""
    reply = _failed(make_exchange())
    _retry(operator, reply)

    response = client_for(pipeline_user).post(
        f"/api/chatroom/{reply.chatroom_id}/message", {"content": "Again?"}, format="json"
    )

    assert response.status_code == 409
    assert error_code(response) == "reply_in_progress"
    assert response.json()["error"]["details"] == {"reply_id": reply.pk}


def test_the_action_needs_the_right_to_change_messages(make_exchange):
    reply = _failed(make_exchange())
    viewer = UserFactory(is_staff=True, phone="+919600000002")
    viewer.user_permissions.add(Permission.objects.get(codename="view_message"))
    browser = Client()
    browser.force_login(viewer)

    page = browser.get(URL)
    assert page.status_code == 200
    assert "retry_reply" not in page.content.decode()
    browser.post(URL, {"action": "retry_reply", "_selected_action": [reply.pk]})

    assert Message.objects.get(pk=reply.pk).status == Status.FAILED
    assert broker_reply_ids() == []
