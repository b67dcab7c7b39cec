"""Chatroom CRUD, the paginated list, history paging and message detail over HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from chatrooms.models import Chatroom, Message
from chatrooms.tests.factories import (
    ChatroomFactory,
    MessageFactory,
    UserFactory,
    client_for,
    error_code,
)
from usage.models import DailyUsage

pytestmark = pytest.mark.django_db

CHATROOM_KEYS = {"id", "name", "system_prompt", "created_at", "updated_at"}
MESSAGE_KEYS = {
    "id", "role", "content", "status", "error", "created_at", "completed_at",
    "model", "usage", "superseded",
}  # fmt: skip


@pytest.fixture
def user() -> User:
    return UserFactory.create()


@pytest.fixture
def client(user: User) -> APIClient:
    return client_for(user)


def _parse_time(value: str) -> dt.datetime:
    assert value.endswith("Z")
    return dt.datetime.fromisoformat(value)


def _next_path(url: str) -> str:
    assert url.startswith("http://testserver/api/chatroom")
    return url.removeprefix("http://testserver")


# --- Create ------------------------------------------------------------------------------


def test_create_returns_the_chatroom(client: APIClient, user: User) -> None:
    response = client.post(
        "/api/chatroom",
        {"name": "  Trip to Goa  ", "system_prompt": "You are a travel agent."},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == CHATROOM_KEYS
    assert body["name"] == "Trip to Goa"
    assert body["system_prompt"] == "You are a travel agent."
    _parse_time(body["created_at"])
    chatroom = Chatroom.objects.get(pk=body["id"])
    assert chatroom.user == user
    assert chatroom.name == "Trip to Goa"


@pytest.mark.parametrize("payload", [{}, {"name": None}, {"name": "   "}])
def test_create_without_a_name_leaves_it_null(client: APIClient, payload: dict[str, Any]) -> None:
    response = client.post("/api/chatroom", payload, format="json")
    assert response.status_code == 201
    assert response.json()["name"] is None
    assert response.json()["system_prompt"] == ""


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x" * 201}, "name"),
        ({"name": 123}, "name"),
        ({"name": ["a"]}, "name"),
        ({"system_prompt": "x" * 4001}, "system_prompt"),
        ({"system_prompt": True}, "system_prompt"),
        ({"system_prompt": None}, "system_prompt"),
    ],
)
def test_create_refuses_invalid_fields(
    client: APIClient, payload: dict[str, Any], field: str
) -> None:
    response = client.post("/api/chatroom", payload, format="json")
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.json()["error"]["details"]["fields"]
    assert not Chatroom.objects.exists()


def test_create_accepts_the_longest_name_and_prompt(client: APIClient) -> None:
    response = client.post(
        "/api/chatroom", {"name": "n" * 200, "system_prompt": "p" * 4000}, format="json"
    )
    assert response.status_code == 201


def test_create_refuses_bodies_that_are_not_json_objects(client: APIClient) -> None:
    as_form = client.post("/api/chatroom", {"name": "x"})  # multipart
    assert as_form.status_code == 415
    assert error_code(as_form) == "unsupported_media_type"
    garbled = client.post("/api/chatroom", "{nope", content_type="application/json")
    assert garbled.status_code == 400
    array = client.post("/api/chatroom", "[]", content_type="application/json")
    assert array.status_code == 400
    assert not Chatroom.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/chatroom"),
        ("post", "/api/chatroom"),
        ("get", "/api/chatroom/1"),
        ("patch", "/api/chatroom/1"),
        ("delete", "/api/chatroom/1"),
        ("get", "/api/chatroom/1/messages"),
        ("post", "/api/chatroom/1/message"),
        ("get", "/api/chatroom/1/message/1"),
    ],
)
def test_every_endpoint_needs_a_token(method: str, path: str) -> None:
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"not_authenticated", "token_invalid"}


def test_a_real_access_token_is_accepted(user: User) -> None:
    ChatroomFactory.create(user=user, name="Mine")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    response = client.get("/api/chatroom")
    assert response.status_code == 200
    assert [room["name"] for room in response.json()["results"]] == ["Mine"]


# --- List ---------------------------------------------------------------------------------


def test_list_pages_newest_first_with_a_cursor(client: APIClient, user: User) -> None:
    created = [ChatroomFactory.create(user=user).pk for _ in range(5)]
    ChatroomFactory.create()  # someone else's
    seen: list[int] = []
    path: str | None = "/api/chatroom?limit=2"
    pages = 0
    while path is not None:
        response = client.get(path)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert set(body) == {"results", "next"}
        assert all(set(room) == CHATROOM_KEYS for room in body["results"])
        seen += [room["id"] for room in body["results"]]
        path = _next_path(body["next"]) if body["next"] else None
        pages += 1
    assert seen == sorted(created, reverse=True)
    assert pages == 3


def test_list_limit_defaults_and_is_capped(client: APIClient, user: User, settings) -> None:
    Chatroom.objects.bulk_create([Chatroom(user=user, name=f"r{i}") for i in range(105)])
    default = client.get("/api/chatroom").json()
    assert len(default["results"]) == settings.PAGE_SIZE_DEFAULT
    capped = client.get("/api/chatroom?limit=500").json()
    assert len(capped["results"]) == 100
    assert "limit=100" in capped["next"]
    rest = client.get(_next_path(capped["next"])).json()
    assert len(rest["results"]) == 5
    assert rest["next"] is None
    assert len(client.get("/api/chatroom?limit=abc").json()["results"]) == 20
    assert len(client.get("/api/chatroom?limit=0").json()["results"]) == 1


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%00",
        "c1.1f",  # the unsigned form of before
        "c2.",
        "c2.1f",
        "c2.1f.",
        "c2.1f." + "A" * 22,  # the right shape, a made-up signature
        "c2.0." + "A" * 22,
        "c2." + "f" * 40 + "." + "A" * 22,
    ],
)
def test_list_refuses_a_bad_cursor(client: APIClient, user: User, cursor: str) -> None:
    ChatroomFactory.create(user=user)
    response = client.get("/api/chatroom", {"cursor": cursor})
    assert response.status_code == 400
    assert error_code(response) == "invalid_cursor"


def _cursor_of(next_url: str) -> str:
    query = parse_qs(urlsplit(next_url).query)
    return query["cursor"][0]


def test_list_accepts_only_the_cursors_it_handed_out(client: APIClient, user: User) -> None:
    """A cursor names one id, for one user: editing it, or replaying it as another user, is a
    400, so a client cannot invent pages."""
    rooms = [ChatroomFactory.create(user=user).pk for _ in range(3)]
    cursor = _cursor_of(client.get("/api/chatroom?limit=1").json()["next"])
    second = client.get("/api/chatroom", {"cursor": cursor, "limit": "1"}).json()
    assert [room["id"] for room in second["results"]] == [rooms[1]]
    _, digits, signature = cursor.split(".")
    for forged in (
        f"c2.{int(digits, 16) - 1:x}.{signature}",  # another id under this signature
        f"c2.0{digits}.{signature}",  # the same id, spelled differently
        f"c2.{digits}.{signature[:-1]}{'B' if signature[-1] != 'B' else 'C'}",
    ):
        refused = client.get("/api/chatroom", {"cursor": forged})
        assert refused.status_code == 400, forged
        assert error_code(refused) == "invalid_cursor"
    stranger = client_for(UserFactory.create())
    theirs = stranger.get("/api/chatroom", {"cursor": cursor})
    assert theirs.status_code == 400
    assert error_code(theirs) == "invalid_cursor"


def test_list_of_a_new_user_is_empty(client: APIClient) -> None:
    assert client.get("/api/chatroom").json() == {"results": [], "next": None}


# --- Detail, update, delete ------------------------------------------------------------


def test_detail_has_the_newest_50_messages_oldest_first(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user)
    ids = [MessageFactory.create(chatroom=chatroom).pk for _ in range(53)]
    body = client.get(f"/api/chatroom/{chatroom.pk}").json()
    assert set(body) == CHATROOM_KEYS | {"messages", "has_more_messages"}
    assert [message["id"] for message in body["messages"]] == ids[-50:]
    assert body["has_more_messages"] is True
    assert set(body["messages"][0]) == MESSAGE_KEYS


def test_detail_of_a_short_chatroom_has_no_more_messages(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user)
    reply = MessageFactory.create(
        chatroom=chatroom,
        role=Message.Role.MODEL,
        status=Message.Status.BLOCKED,
        error_code="blocked",
        error_message="SAFETY",
    )
    body = client.get(f"/api/chatroom/{chatroom.pk}").json()
    assert body["has_more_messages"] is False
    assert body["messages"] == [
        {
            "id": reply.pk,
            "role": "model",
            "content": reply.content,
            "status": "blocked",
            "error": {"code": "blocked", "message": "SAFETY"},
            "created_at": body["messages"][0]["created_at"],
            "completed_at": None,
            "model": None,
            "usage": None,
            "superseded": False,
        }
    ]


def test_patch_changes_only_the_fields_sent(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user, name="Old", system_prompt="Be brief.")
    before = client.get(f"/api/chatroom/{chatroom.pk}").json()
    response = client.patch(f"/api/chatroom/{chatroom.pk}", {"name": " New "}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CHATROOM_KEYS
    assert (body["name"], body["system_prompt"]) == ("New", "Be brief.")
    assert _parse_time(body["updated_at"]) > _parse_time(before["updated_at"])
    prompt = client.patch(f"/api/chatroom/{chatroom.pk}", {"system_prompt": ""}, format="json")
    assert (prompt.json()["name"], prompt.json()["system_prompt"]) == ("New", "")
    chatroom.refresh_from_db()
    assert (chatroom.name, chatroom.system_prompt) == ("New", "")


def test_patch_with_a_null_name_brings_back_the_generated_title(
    client: APIClient, user: User
) -> None:
    chatroom = ChatroomFactory.create(user=user, name="Custom")
    MessageFactory.create(chatroom=chatroom, content="How do tides work?\nAnd why twice a day?")
    response = client.patch(f"/api/chatroom/{chatroom.pk}", {"name": None}, format="json")
    assert response.json()["name"] == "How do tides work?"
    empty = ChatroomFactory.create(user=user, name="Custom")
    response = client.patch(f"/api/chatroom/{empty.pk}", {"name": None}, format="json")
    assert response.json()["name"] is None


def test_patch_refuses_invalid_fields(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user, name="Keep")
    for payload in ({"name": "x" * 201}, {"name": 5}, {"system_prompt": {"a": 1}}):
        response = client.patch(f"/api/chatroom/{chatroom.pk}", payload, format="json")
        assert response.status_code == 400
        assert error_code(response) == "validation_error"
    chatroom.refresh_from_db()
    assert chatroom.name == "Keep"


def test_delete_removes_the_chatroom_and_its_messages(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user)
    MessageFactory.create_batch(3, chatroom=chatroom)
    kept = MessageFactory.create(chatroom=ChatroomFactory.create(user=user))
    response = client.delete(f"/api/chatroom/{chatroom.pk}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/chatroom/{chatroom.pk}").status_code == 404
    assert client.delete(f"/api/chatroom/{chatroom.pk}").status_code == 404
    assert list(Message.objects.values_list("pk", flat=True)) == [kept.pk]


def test_unknown_chatroom_is_404(client: APIClient) -> None:
    response = client.get("/api/chatroom/999999")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


# --- History and message detail ------------------------------------------------------------


def test_history_pages_backwards_oldest_first_within_a_page(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user)
    ids = [MessageFactory.create(chatroom=chatroom).pk for _ in range(25)]
    MessageFactory.create(chatroom=ChatroomFactory.create(user=user))  # another chatroom's
    pages: list[list[int]] = []
    path: str | None = f"/api/chatroom/{chatroom.pk}/messages?limit=10"
    while path is not None:
        body = client.get(path).json()
        assert set(body) == {"results", "next"}
        pages.append([message["id"] for message in body["results"]])
        path = _next_path(body["next"]) if body["next"] else None
    assert pages == [ids[15:], ids[5:15], ids[:5]]


def test_history_before_a_given_message(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user)
    ids = [MessageFactory.create(chatroom=chatroom).pk for _ in range(4)]
    body = client.get(f"/api/chatroom/{chatroom.pk}/messages?before={ids[2]}").json()
    assert [message["id"] for message in body["results"]] == ids[:2]
    assert body["next"] is None
    empty = client.get(f"/api/chatroom/{chatroom.pk}/messages").json()
    assert len(empty["results"]) == 4


@pytest.mark.parametrize("before", ["abc", "-1", "0", "1.5", "9" * 30])
def test_history_refuses_a_bad_before(client: APIClient, user: User, before: str) -> None:
    chatroom = ChatroomFactory.create(user=user)
    response = client.get(f"/api/chatroom/{chatroom.pk}/messages", {"before": before})
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "before" in response.json()["error"]["details"]["fields"]


def test_message_detail(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user)
    message = MessageFactory.create(chatroom=chatroom, content="Hello")
    response = client.get(f"/api/chatroom/{chatroom.pk}/message/{message.pk}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == MESSAGE_KEYS
    assert (body["id"], body["role"], body["content"]) == (message.pk, "user", "Hello")
    assert body["error"] is None
    other_room = ChatroomFactory.create(user=user)
    wrong_room = client.get(f"/api/chatroom/{other_room.pk}/message/{message.pk}")
    assert wrong_room.status_code == 404


# --- Another user's chatroom is 404 everywhere -----------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("get", "", None),
        ("patch", "", {"name": "Stolen"}),
        ("delete", "", None),
        ("get", "/messages", None),
        ("post", "/message", {"content": "hi"}),
        ("get", "/message/{mid}", None),
    ],
)
def test_another_users_chatroom_is_404_for_every_endpoint(
    client: APIClient, method: str, suffix: str, payload: dict[str, str] | None
) -> None:
    owner = UserFactory.create()
    chatroom = ChatroomFactory.create(user=owner, name="Private", system_prompt="secret")
    message = MessageFactory.create(chatroom=chatroom, content="private words")
    path = f"/api/chatroom/{chatroom.pk}{suffix}".replace("{mid}", str(message.pk))
    response = getattr(client, method)(path, payload, format="json")
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert "private" not in response.content.decode().lower()
    chatroom.refresh_from_db()
    assert chatroom.name == "Private"
    assert Message.objects.filter(chatroom=chatroom).count() == 1
    assert not DailyUsage.objects.exists()


# --- Query counts do not grow with the data -------------------------------------------------


@pytest.mark.parametrize("rooms", [1, 60])
def test_list_miss_queries_do_not_grow(
    client: APIClient, user: User, rooms: int, django_assert_max_num_queries
) -> None:
    Chatroom.objects.bulk_create([Chatroom(user=user, name=f"r{i}") for i in range(rooms)])
    with django_assert_max_num_queries(1):
        response = client.get("/api/chatroom?limit=50")
    assert response["X-Cache"] == "MISS"
    assert len(response.json()["results"]) == min(rooms, 50)


@pytest.mark.parametrize("messages", [1, 120])
def test_detail_and_history_queries_do_not_grow(
    client: APIClient, user: User, messages: int, django_assert_max_num_queries
) -> None:
    chatroom = ChatroomFactory.create(user=user)
    Message.objects.bulk_create(
        [
            Message(chatroom=chatroom, role="user", content=f"m{i}", status="completed")
            for i in range(messages)
        ]
    )
    last = Message.objects.filter(chatroom=chatroom).last()
    assert last is not None
    with django_assert_max_num_queries(2):
        assert client.get(f"/api/chatroom/{chatroom.pk}").status_code == 200
    with django_assert_max_num_queries(2):
        assert client.get(f"/api/chatroom/{chatroom.pk}/messages?limit=100").status_code == 200
    with django_assert_max_num_queries(1):
        path = f"/api/chatroom/{chatroom.pk}/message/{last.pk}"
        assert client.get(path).status_code == 200


# --- Admin -------------------------------------------------------------------------------


def test_admin_pages_render_without_n_plus_1(django_assert_max_num_queries) -> None:
    admin = User.objects.create_superuser(phone="+919811111111", password="x-Long-pass-123")
    owners = UserFactory.create_batch(5)
    for owner in owners:
        MessageFactory.create_batch(3, chatroom=ChatroomFactory.create(user=owner))
    client = APIClient()
    client.force_login(admin)
    chatroom = Chatroom.objects.first()
    assert chatroom is not None
    message = Message.objects.first()
    assert message is not None
    pages = [
        "/admin/chatrooms/chatroom/",
        f"/admin/chatrooms/chatroom/?q={str(owners[0].phone)[3:]}",
        f"/admin/chatrooms/chatroom/{chatroom.pk}/change/",
        "/admin/chatrooms/message/?status__exact=completed",
        f"/admin/chatrooms/message/{message.pk}/change/",
    ]
    for page in pages:
        with django_assert_max_num_queries(12):
            response = client.get(page)
        assert response.status_code == 200, page
    found = client.get("/admin/chatrooms/chatroom/", {"q": str(owners[0].phone)}).content
    assert str(owners[0].phone) in found.decode()
    assert str(owners[1].phone) not in found.decode()
