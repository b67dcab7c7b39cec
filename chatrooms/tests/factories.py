"""Factories and small helpers shared by the chatroom tests."""

from __future__ import annotations

from typing import Any

import factory
from factory.django import DjangoModelFactory
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory
from chatrooms.models import Chatroom, Message

__all__ = ["ChatroomFactory", "MessageFactory", "UserFactory", "client_for", "error_code"]


class ChatroomFactory(DjangoModelFactory[Chatroom]):
    class Meta:
        model = Chatroom

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Chatroom {n}")
    system_prompt = ""


class MessageFactory(DjangoModelFactory[Message]):
    class Meta:
        model = Message

    chatroom = factory.SubFactory(ChatroomFactory)
    role = Message.Role.USER
    content = factory.Sequence(lambda n: f"Message {n}")
    status = Message.Status.COMPLETED


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])
