"""GET /api/search: ranked, scoped to the user, highlighted, paged; and the GIN index used."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from chatrooms.errors import SearchTimedOut
from chatrooms.models import Message
from chatrooms.search import _SEARCH_SQL, search  # the statement the endpoint runs
from chatrooms.tests.factories import ChatroomFactory, MessageFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db

Status = Message.Status


@pytest.fixture
def user():
    return UserFactory.create()


@pytest.fixture
def client(user) -> APIClient:
    return client_for(user)


def _search(client: APIClient, **params):
    return client.get("/api/search", params)


def test_results_are_the_users_own_best_first_with_highlighted_snippets(client, user):
    room = ChatroomFactory.create(user=user, name="Travel plans")
    once = MessageFactory.create(chatroom=room, content="Kerala in December is lovely.")
    twice = MessageFactory.create(
        chatroom=room, content="Kerala backwaters: a houseboat in Kerala, slowly."
    )
    MessageFactory.create(chatroom=room, content="Nothing to see here.")
    stranger_room = ChatroomFactory.create(user=UserFactory.create(), name="Kerala")
    MessageFactory.create(chatroom=stranger_room, content="Kerala Kerala Kerala")

    body = _search(client, q="kerala").json()

    ids = [r["message"]["id"] if r["message"] else None for r in body["results"]]
    assert ids == [twice.pk, once.pk]  # more matches rank higher; no stranger's row
    first = body["results"][0]
    assert first["chatroom_id"] == room.pk and first["chatroom_name"] == "Travel plans"
    assert "<mark>Kerala</mark>" in first["snippet"]
    assert first["rank"] > body["results"][1]["rank"]
    assert first["message"]["content"] == twice.content
    assert body["next"] is None


def test_chatroom_names_match_too_and_words_are_case_blind(client, user):
    room = ChatroomFactory.create(user=user, name="Monsoon Recipes")

    body = _search(client, q="RECIPES").json()

    assert [(r["chatroom_id"], r["message"]) for r in body["results"]] == [(room.pk, None)]
    assert body["results"][0]["snippet"] == "Monsoon <mark>Recipes</mark>"


def test_only_completed_messages_and_no_superseded_reply(client, user):
    room = ChatroomFactory.create(user=user)
    kept = MessageFactory.create(chatroom=room, role="model", content="Photon facts")
    MessageFactory.create(chatroom=room, role="model", content="Photon draft", superseded=True)
    MessageFactory.create(chatroom=room, role="model", status=Status.STREAMING, content="Photon")
    MessageFactory.create(chatroom=room, role="model", status=Status.FAILED, content="Photon x")

    body = _search(client, q="photon").json()

    assert [r["message"]["id"] for r in body["results"]] == [kept.pk]


def test_html_in_a_message_comes_back_escaped(client, user):
    room = ChatroomFactory.create(user=user)
    MessageFactory.create(chatroom=room, content="<script>alert(1)</script> danger zone")

    snippet = _search(client, q="danger").json()["results"][0]["snippet"]

    assert "<mark>danger</mark>" in snippet
    assert "&lt;/script&gt;" in snippet
    assert "<" not in snippet.replace("<mark>", "").replace("</mark>", "")


def test_pages_give_every_result_once(client, user):
    room = ChatroomFactory.create(user=user, name=None)
    made = {
        MessageFactory.create(chatroom=room, content=f"tea {'tea ' * (n % 4)}number {n}").pk
        for n in range(23)
    }
    seen: list[int] = []
    page = _search(client, q="tea", limit=5).json()
    while True:
        seen += [r["message"]["id"] for r in page["results"]]
        if page["next"] is None:
            break
        page = client.get(page["next"]).json()
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("q", ["", "   ", "x" * 201])
def test_a_blank_or_long_query_is_refused(client, q):
    response = _search(client, q=q)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "q" in response.json()["error"]["details"]["fields"]


def test_a_missing_query_odd_input_and_bad_cursors(client, user):
    assert _search(client).status_code == 400
    assert _search(client, q='"unbalanced -- or or !!').status_code == 200
    room = ChatroomFactory.create(user=user)
    for n in range(3):
        MessageFactory.create(chatroom=room, content=f"bread {n}")
    next_url = _search(client, q="bread", limit=1).json()["next"]
    cursor = next_url.split("cursor=")[1]
    for bad in ("nonsense", cursor[:-2] + "xx"):
        response = _search(client, q="bread", cursor=bad)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")
    # A cursor is for its user and its query only.
    assert _search(client, q="butter", cursor=cursor).status_code == 400
    other = client_for(UserFactory.create())
    assert _search(other, q="bread", cursor=cursor).status_code == 400


def test_unauthenticated_is_401():
    assert APIClient().get("/api/search", {"q": "x"}).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_gin_index_finds_the_messages_among_100k_and_a_broad_search_is_bounded(user, settings):
    room = ChatroomFactory.create(user=user)
    other_room = ChatroomFactory.create(user=UserFactory.create())
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO chatrooms_message (chatroom_id, role, content, status, error_code,
                error_message, created_at, updated_at, attempts, attempt_base, model_name,
                tokens_estimated, superseded)
            SELECT CASE WHEN n %% 10 = 0 THEN %s ELSE %s END, 'user',
                   'message ' || n || ' about ' || (ARRAY['tea','rice','rain','bus'])[n %% 4 + 1]
                   || CASE WHEN n %% 5000 IN (0, 1) THEN ' zanzibar' ELSE '' END,
                   'completed', '', '', now(), now(), 0, 0, '', false, false
            FROM generate_series(1, 100000) AS n
            """,
            [other_room.pk, room.pk],
        )
        cursor.execute("ANALYZE chatrooms_message")
        cursor.execute("ANALYZE chatrooms_chatroom")

    page = search(user_id=user.pk, q="zanzibar", limit=50)
    assert len(page.hits) == 20  # the user's 20, not the other user's 20
    assert {hit.chatroom_id for hit in page.hits} == {room.pk}

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + _SEARCH_SQL,
            {
                "q": "zanzibar",
                "user_id": user.pk,
                "completed": "completed",
                "after_rank": None,
                "after_chatroom": 0,
                "after_message": 0,
                "limit": 21,
                "headline": "StartSel=<mark>",
            },
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Bitmap Index Scan on message_search" in plan, plan

    # A word in nearly every message of a long history: PostgreSQL would rank them all; the
    # statement timeout ends it (here as short as can be) with the contract's error.
    settings.SEARCH_TIMEOUT_MS = 1
    with pytest.raises(SearchTimedOut):
        search(user_id=user.pk, q="message", limit=20)
    answer = client_for(user).get("/api/search", {"q": "message"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "search_timeout")
