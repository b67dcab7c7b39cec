"""core.sql.insert_new: the send path's INSERT, with and without its guard."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DataError, transaction

from chatrooms.models import Message
from chatrooms.tests.factories import ChatroomFactory
from core.sql import insert_new

pytestmark = pytest.mark.django_db

_ANY_OF_ROLE = f"SELECT FROM {Message._meta.db_table} WHERE chatroom_id = %s AND role = %s"


_NOW = dt.datetime(2026, 12, 5, 14, 0, tzinfo=dt.UTC)


def _messages(chatroom_id: int) -> list[Message]:
    return [
        Message(chatroom_id=chatroom_id, role="user", content="Hi", status="completed"),
        Message(
            chatroom_id=chatroom_id,
            role="model",
            status="pending",
            created_at=_NOW,
            usage_day=dt.date(2026, 12, 5),
            tokens_estimated=True,
            lease_expires_at=_NOW,
        ),
    ]


@pytest.mark.parametrize("guarded", [False, True], ids=["plain", "guarded"])
def test_every_field_is_stored_as_bulk_create_would(guarded: bool):
    chatroom = ChatroomFactory.create()
    ours = _messages(chatroom.pk)
    if guarded:
        guard = [chatroom.pk, "model"]
        inserted = insert_new(ours, unless_exists=_ANY_OF_ROLE, unless_params=guard)
    else:
        inserted = insert_new(ours)
    assert inserted is True
    django_s = Message.objects.bulk_create(_messages(chatroom.pk))

    def stored(message: Message) -> dict[str, object]:
        row = Message.objects.filter(pk=message.pk).values().get()
        return {k: v for k, v in row.items() if k not in {"id", "created_at", "updated_at"}}

    assert [m.pk for m in ours] == sorted(m.pk for m in ours)
    assert [stored(m) for m in ours] == [stored(m) for m in django_s]


def test_the_guard_inserts_nothing_when_its_query_finds_a_row():
    chatroom = ChatroomFactory.create()
    insert_new(_messages(chatroom.pk)[1:])
    refused = _messages(chatroom.pk)
    guard = [chatroom.pk, "model"]
    inserted = insert_new(refused, unless_exists=_ANY_OF_ROLE, unless_params=guard)
    assert inserted is False
    assert [m.pk for m in refused] == [None, None]
    assert Message.objects.filter(chatroom=chatroom).count() == 1


@pytest.mark.parametrize("guarded", [False, True], ids=["plain", "guarded"])
def test_a_value_too_long_for_its_column_is_refused_not_cut(guarded: bool):
    chatroom = ChatroomFactory.create()
    (reply,) = _messages(chatroom.pk)[1:]
    reply.error_code = "x" * 65  # varchar(64)
    guard = [chatroom.pk, "model"]
    with pytest.raises(DataError), transaction.atomic():
        if guarded:
            insert_new([reply], unless_exists=_ANY_OF_ROLE, unless_params=guard)
        else:
            insert_new([reply])
    assert not Message.objects.filter(chatroom=chatroom).exists()
