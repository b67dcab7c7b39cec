"""Cached list hits and `/me` answered in the event loop (`gemini_clone.loop_answers`): the
same answer as Django's for every request, Django's whenever it could differ, and never an
answer it would not give."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django_redis import get_redis_connection
from rest_framework_simplejwt.tokens import AccessToken

from accounts.auth_cache import auth_user_redis_key, auth_user_remember
from accounts.models import User
from accounts.tokens import token_pair_issue
from chatrooms import cache
from chatrooms.tests.factories import ChatroomFactory, UserFactory
from core.request_body import RequestBodyReader
from core.request_log import RequestLog
from core.throttling import WINDOW_SECONDS
from gemini_clone.asgi import _dispatch, django_wsgi
from gemini_clone.loop_answers import LoopAnswers, _AnswerKind, _may_replay
from usage.models import DailyUsage

pytestmark = pytest.mark.django_db(transaction=True)

IGNORED_HEADERS = {b"date", b"x-request-id"}
ME = "/api/user/me"
# `/me`'s pause after a failed query, in the test of it: long enough for a failure, Django's
# 500 and the next request to fit in one pause on a busy machine.
ME_PAUSE = 2.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Server:
    """The ASGI stack with the layer under test, and the same stack without it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **options: Any) -> None:
        self.loop = loop
        self.django_calls = 0

        async def counted_dispatch(scope: Any, receive: Any, send: Any) -> None:
            self.django_calls += 1
            await _dispatch(scope, receive, send)

        limit = django_settings.API_MAX_BODY_BYTES
        self.with_hits = RequestLog(
            RequestBodyReader(
                LoopAnswers(counted_dispatch, threads=django_wsgi.executor, **options),
                max_bytes=limit,
            )
        )
        self.django_only = RequestLog(RequestBodyReader(_dispatch, max_bytes=limit))

    def get(
        self,
        path: str = "/api/chatroom",
        *,
        token: str | None = None,
        headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        method: str = "GET",
        django_only: bool = False,
    ) -> Answer:
        app = self.django_only if django_only else self.with_hits
        return self.loop.run_until_complete(_call(app, method, path, token, list(headers)))

    def both(self, path: str = "/api/chatroom", **options: Any) -> tuple[Answer, bool]:
        """Django's answer, then the layer's, which must be the same; and whether the layer
        answered it itself."""
        expected = self.get(path, django_only=True, **options)
        calls = self.django_calls
        answer = self.get(path, **options)
        assert answer.status == expected.status
        assert _comparable(answer.headers) == _comparable(expected.headers)
        assert answer.body == expected.body
        return answer, self.django_calls == calls


def _comparable(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name not in IGNORED_HEADERS]


async def _call(
    app: Any, method: str, path: str, token: str | None, headers: list[tuple[bytes, bytes]]
) -> Answer:
    path, _, query = path.partition("?")
    sent: list[dict[str, Any]] = []
    request_headers = [(b"host", b"testserver"), *headers]
    if token is not None:
        request_headers.append((b"authorization", f"Bearer {token}".encode()))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": request_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], list(start["headers"]), body)


@pytest.fixture
def server() -> Iterator[Server]:
    loop = asyncio.new_event_loop()
    try:
        yield Server(loop)
    finally:
        loop.close()


@pytest.fixture
def owner() -> User:
    user = UserFactory.create()
    for index in range(3):
        ChatroomFactory.create(user=user, name=f"Room {index}")
    return user


def _token(user: User) -> str:
    return token_pair_issue(user=user).access


def _primed(server: Server, token: str, path: str = "/api/chatroom") -> None:
    """A miss, then a hit Django answers (the layer keeps its headers)."""
    assert _cache_state(server.get(path, token=token)) == "MISS"
    assert _cache_state(server.get(path, token=token)) == "HIT"


def _cache_state(answer: Answer) -> str | None:
    return dict(answer.headers).get(b"x-cache", b"").decode() or None


def test_a_hit_is_answered_in_the_event_loop_with_djangos_answer(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    answer, in_loop = server.both(token=token)
    assert in_loop
    assert _cache_state(answer) == "HIT"
    assert [room["name"] for room in json.loads(answer.body)["results"]] == [
        "Room 2",
        "Room 1",
        "Room 0",
    ]


def test_nothing_is_answered_before_django_answered_a_hit(server, owner) -> None:
    token = _token(owner)
    server.get(token=token, django_only=True)  # the page is cached, but not by this layer
    calls = server.django_calls
    assert _cache_state(server.get(token=token)) == "HIT"
    assert server.django_calls == calls + 1


def test_pages_and_cursors_answer_as_django_does(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    assert _cache_state(server.get("/api/chatroom?limit=2", token=token)) == "MISS"
    first, in_loop = server.both("/api/chatroom?limit=2", token=token)
    assert in_loop and _cache_state(first) == "HIT"
    next_url = json.loads(first.body)["next"]
    next_path = next_url.removeprefix("http://testserver")
    server.get(next_path, token=token)
    second, in_loop = server.both(next_path, token=token)
    assert in_loop
    assert [room["name"] for room in json.loads(second.body)["results"]] == ["Room 0"]
    # A limit it cannot read is the default page, as Django reads it; an unknown
    # parameter changes nothing.
    _, in_loop = server.both("/api/chatroom?limit=abc&colour=blue", token=token)
    assert in_loop


@pytest.mark.parametrize(
    "query",
    ["cursor=garbage", "cursor=c2.1.AAAAAAAAAAAAAAAAAAAAAA", "cursor=c2.01.x"],
)
def test_a_cursor_django_refuses_is_refused_by_django(server, owner, query) -> None:
    token = _token(owner)
    _primed(server, token)
    answer, in_loop = server.both(f"/api/chatroom?{query}", token=token)
    assert answer.status == 400 and not in_loop


def test_another_users_cursor_is_refused_by_django(server, owner) -> None:
    other = UserFactory.create()
    for _ in range(3):
        ChatroomFactory.create(user=other)
    other_token = _token(other)
    server.get("/api/chatroom?limit=1", token=other_token)
    next_path = json.loads(server.get("/api/chatroom?limit=1", token=other_token).body)["next"]
    next_path = next_path.removeprefix("http://testserver")
    token = _token(owner)
    _primed(server, token)
    answer, in_loop = server.both(next_path, token=token)
    assert answer.status == 400 and not in_loop


def _expired_token(user: User) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"Bearer",
        b"Bearer not-a-token",
        b"Bearer a b",
        b"Token whatever",
        b"bearer " + b"x" * 40,
        "expired",
        "refresh",
    ],
)
def test_refused_tokens_get_djangos_refusal(server, owner, authorization) -> None:
    _primed(server, _token(owner))
    if authorization == "expired":
        authorization = f"Bearer {_expired_token(owner)}".encode()
    elif authorization == "refresh":
        authorization = f"Bearer {token_pair_issue(user=owner).refresh}".encode()
    headers = [] if authorization is None else [(b"authorization", authorization)]
    answer, in_loop = server.both(headers=headers)
    assert answer.status == 401 and not in_loop


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"evil.example")],
        [(b"content-length", b"abc")],
        [(b"origin", b"https://elsewhere.example")],
        [(b"cookie", b"sessionid=x")],
        [(b"if-none-match", b'"abc"')],
    ],
)
def test_requests_with_other_headers_are_djangos(server, owner, headers) -> None:
    token = _token(owner)
    _primed(server, token)
    _, in_loop = server.both(token=token, headers=headers)
    assert not in_loop
    server.get(ME, token=token)
    server.get(ME, token=token)
    assert server.both(ME, token=token)[1]  # /me is answered in the loop, but not these
    _, in_loop = server.both(ME, token=token, headers=headers)
    assert not in_loop


def test_head_and_a_forwarded_scheme_are_djangos_until_recorded(server, owner, settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    token = _token(owner)
    _primed(server, token)
    _, in_loop = server.both(token=token, method="HEAD")
    assert not in_loop
    # https (behind a proxy Django trusts): answered by Django, whose answer is then kept.
    forwarded = [(b"x-forwarded-proto", b"https")]
    server.get(token=token, headers=forwarded)  # its own page: its links are https
    _, in_loop = server.both(token=token, headers=forwarded)
    assert not in_loop
    _, in_loop = server.both(token=token, headers=forwarded)
    assert in_loop


def test_a_password_change_revokes_at_once(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    owner.set_password("a new password 123")
    owner.save()
    answer, in_loop = server.both(token=token)
    assert answer.status == 401 and not in_loop
    assert json.loads(answer.body)["error"]["code"] == "authentication_failed"
    # Once the copy is of the new row (the marker gone, a new token's request read the row),
    # the old token is refused by the copy's own check.
    _copy_of_current_row(server, owner)
    if int(time.time()) % WINDOW_SECONDS > WINDOW_SECONDS - 5:
        time.sleep(6)  # the counts in one window
    count = _count_now(owner.pk)
    answer, in_loop = server.both(token=token)
    assert answer.status == 401 and not in_loop
    # Django's answer, and the layer's, counted by the layer and handed over: once each.
    assert _count_now(owner.pk) == count + 2


def _copy_of_current_row(server: Server, user: User) -> None:
    get_redis_connection("default").delete(auth_user_redis_key(user_id=user.pk))  # its TTL
    user.refresh_from_db()
    if user.is_active:
        server.get(token=_token(user))
    else:
        auth_user_remember(user=user)
    assert get_redis_connection("default").get(auth_user_redis_key(user_id=user.pk))


def test_a_deactivated_user_is_refused(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    owner.is_active = False
    owner.save()
    answer, in_loop = server.both(token=token)
    assert answer.status == 401 and not in_loop
    _copy_of_current_row(server, owner)
    answer, in_loop = server.both(token=token)
    assert answer.status == 401 and not in_loop


def test_a_change_of_the_list_is_seen_at_once(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    ChatroomFactory.create(user=owner, name="Newest")
    cache.list_cache_invalidate(user_id=owner.pk)
    calls = server.django_calls
    answer = server.get(token=token)
    assert _cache_state(answer) == "MISS" and server.django_calls == calls + 1
    assert json.loads(answer.body)["results"][0]["name"] == "Newest"
    answer, in_loop = server.both(token=token)
    assert in_loop and json.loads(answer.body)["results"][0]["name"] == "Newest"


def test_a_pending_invalidation_keeps_the_page_from_the_loop(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    cache._pending[owner.pk] = 1  # what a failed invalidation leaves
    try:
        calls = server.django_calls
        assert server.get(token=token).status == 200
        assert server.django_calls == calls + 1
    finally:
        cache._pending.clear()


def _count_now(user_id: int) -> int:
    window = int(time.time() // WINDOW_SECONDS)
    prefix = django_settings.CACHES["default"].get("KEY_PREFIX", "")
    raw = get_redis_connection("default").get(f"{prefix}:throttle:{user_id}:{window}")
    return int(raw or 0)


def test_each_hit_counts_once_and_the_rate_is_djangos(server, owner, settings) -> None:
    settings.API_RATE_PER_MINUTE = 5
    token = _token(owner)
    if int(time.time()) % WINDOW_SECONDS > WINDOW_SECONDS - 5:
        time.sleep(6)  # the priming and the counts in one window
    _primed(server, token)  # 2 requests
    before = _count_now(owner.pk)
    calls = server.django_calls
    for _ in range(3):
        assert server.get(token=token).status == 200
    assert server.django_calls == calls  # all three in the loop
    assert _count_now(owner.pk) == before + 3
    refused = server.get(token=token)
    assert refused.status == 429
    assert json.loads(refused.body)["error"]["code"] == "rate_limited"
    assert server.django_calls == calls + 1
    assert _count_now(owner.pk) == before + 4  # counted here, and not again by Django


def test_redis_down_leaves_the_list_to_django(server, owner, cache_redis) -> None:
    token = _token(owner)
    _primed(server, token)
    cache_redis.refuse_connections()
    try:
        started = time.monotonic()
        answer = server.get(token=token)
        assert answer.status == 200 and _cache_state(answer) == "MISS"
        assert time.monotonic() - started < 5
    finally:
        cache_redis.accept_connections()


def test_the_log_line_names_the_route_and_user(server, owner, caplog) -> None:
    token = _token(owner)
    _primed(server, token)
    calls = server.django_calls
    with caplog.at_level("INFO", logger="gemini_clone.request"):
        server.get(token=token)
    assert server.django_calls == calls
    line = caplog.records[-1].msg
    assert isinstance(line, dict)
    assert (line["route"], line["user_id"], line["status"]) == ("api/chatroom", owner.pk, 200)


def test_me_is_answered_in_the_event_loop_with_djangos_answer(server, owner) -> None:
    token = _token(owner)
    first = server.get(ME, token=token)  # Django's (the row's copy is remembered)
    assert first.status == 200
    assert server.get(ME, token=token).status == 200  # Django's again, its headers kept
    answer, in_loop = server.both(ME, token=token)
    assert in_loop
    assert json.loads(answer.body)["id"] == owner.pk
    assert json.loads(answer.body)["usage"]["used"] == 0


def test_me_follows_the_users_changes(server, owner) -> None:
    token = _token(owner)
    server.get(ME, token=token)
    server.get(ME, token=token)
    owner.name = "Ada"
    owner.save()
    assert json.loads(server.get(ME, token=token).body)["name"] == "Ada"  # Django's
    _copy_of_current_row(server, owner)  # once the change's marker is gone
    answer, in_loop = server.both(ME, token=token)
    assert in_loop and json.loads(answer.body)["name"] == "Ada"


@pytest.mark.parametrize("authorization", [None, b"Bearer not-a-token", "expired"])
def test_me_with_a_refused_token_is_djangos(server, owner, authorization) -> None:
    token = _token(owner)
    server.get(ME, token=token)
    server.get(ME, token=token)
    if authorization == "expired":
        authorization = f"Bearer {_expired_token(owner)}".encode()
    headers = [] if authorization is None else [(b"authorization", authorization)]
    answer, in_loop = server.both(ME, headers=headers)
    assert answer.status == 401 and not in_loop


def test_me_after_a_password_change_is_refused(server, owner) -> None:
    token = _token(owner)
    server.get(ME, token=token)
    server.get(ME, token=token)
    owner.set_password("a new password 123")
    owner.save()
    _copy_of_current_row(server, owner)
    answer, in_loop = server.both(ME, token=token)
    assert answer.status == 401 and not in_loop


class _TableAway:
    """`/me`'s usage query fails while the table is renamed."""

    def __init__(self) -> None:
        self.table = DailyUsage._meta.db_table

    def __enter__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{self.table}" RENAME TO "{self.table}_away"')

    def __exit__(self, *exc: object) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{self.table}_away" RENAME TO "{self.table}"')


def test_me_whose_query_fails_is_djangos(server, owner) -> None:
    token = _token(owner)
    server.get(ME, token=token)
    server.get(ME, token=token)
    with _TableAway():
        answer, in_loop = server.both(ME, token=token)
    assert answer.status == 500 and not in_loop
    assert json.loads(answer.body)["error"]["code"] == "server_error"
    # For a few seconds after, `/me` goes straight to Django, query or not, counted once.
    if int(time.time()) % WINDOW_SECONDS > WINDOW_SECONDS - 2:
        time.sleep(3)
    calls, count = server.django_calls, _count_now(owner.pk)
    assert server.get(ME, token=token).status == 200
    assert server.django_calls == calls + 1
    assert _count_now(owner.pk) == count + 1


def test_after_a_failed_me_query_one_me_a_pause_tries_the_query_again(owner, caplog) -> None:
    if int(time.time()) % WINDOW_SECONDS > WINDOW_SECONDS - 10:
        time.sleep(11)  # the counts in one window
    loop = asyncio.new_event_loop()
    server = Server(loop, me_pause_seconds=ME_PAUSE)

    def tries_of_the_query() -> int:
        return caplog.text.count("/me not answered in the event loop")

    try:
        token = _token(owner)
        server.get(ME, token=token)
        server.get(ME, token=token)
        with _TableAway(), caplog.at_level("WARNING", logger="gemini_clone.loop_answers"):
            server.get(ME, token=token)  # fails in the loop, then Django's 500
            assert tries_of_the_query() == 1
            time.sleep(ME_PAUSE + 0.1)
            calls, count = server.django_calls, _count_now(owner.pk)
            assert server.get(ME, token=token).status == 500  # the trial fails...
            assert tries_of_the_query() == 2
            assert server.get(ME, token=token).status == 500  # ...and this one is not tried
            assert tries_of_the_query() == 2
            assert server.django_calls == calls + 2
            assert _count_now(owner.pk) == count + 2  # each counted once
        time.sleep(ME_PAUSE + 0.1)
        calls = server.django_calls
        for _ in range(3):  # the trial succeeds: all in the loop again
            assert server.get(ME, token=token).status == 200
        assert server.django_calls == calls
    finally:
        loop.close()


def test_the_layer_is_on_with_the_projects_settings(server) -> None:
    assert LoopAnswers(_dispatch, threads=django_wsgi.executor).enabled


def test_a_cache_option_its_connections_would_not_follow_turns_the_layer_off(settings) -> None:
    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches["default"]["OPTIONS"] = {**caches["default"]["OPTIONS"], "PASSWORD": "secret"}
    settings.CACHES = caches
    assert not LoopAnswers(_dispatch, threads=django_wsgi.executor).enabled


def test_another_middleware_turns_the_layer_off(server, owner, settings) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    server = Server(server.loop)
    token = _token(owner)
    _primed(server, token)
    calls = server.django_calls
    assert server.get(token=token).status == 200
    assert server.django_calls == calls + 1


def test_an_empty_body_declared_is_answered(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    _, in_loop = server.both(token=token, headers=[(b"content-length", b"0")])
    assert in_loop


def test_a_query_django_cannot_read_is_djangos(server, owner) -> None:
    token = _token(owner)
    _primed(server, token)
    fields = "&".join(f"f{index}=1" for index in range(1001))  # DATA_UPLOAD_MAX_NUMBER_FIELDS
    answer, in_loop = server.both(f"/api/chatroom?{fields}", token=token)
    assert not in_loop
    assert answer.status == 400
    assert json.loads(answer.body)["error"]["code"] == "bad_request"
    server.get(ME, token=token)
    server.get(ME, token=token)
    answer, in_loop = server.both(f"{ME}?{fields}", token=token)
    assert answer.status == 400 and not in_loop


def test_only_headers_the_same_for_every_user_are_recorded() -> None:
    kind = _AnswerKind(ME, secure=False)
    usual = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    assert _may_replay(kind, usual)
    # A header a view might one day set per user (its value would go to everyone).
    assert not _may_replay(kind, [*usual, (b"x-ratelimit-remaining", b"7")])
    assert not _may_replay(kind, [*usual, (b"set-cookie", b"a=b")])


@pytest.mark.parametrize(
    "forged",
    [
        [(b"gemini_clone.throttle_counted_for", b"USER")],
        [(b"wsgi-bridge.extra-environ", b"USER")],
        [(b"gemini-clone.throttle-counted-for", b"USER")],
    ],
)
def test_no_header_passes_for_the_counts_mark(server, owner, forged) -> None:
    """The mark that spares a request Django's count is the server's; a client's header
    that looks like it is counted as any request is (here by Django: an unknown header)."""
    token = _token(owner)
    headers = [(name, value.replace(b"USER", str(owner.pk).encode())) for name, value in forged]
    if int(time.time()) % WINDOW_SECONDS > WINDOW_SECONDS - 5:
        time.sleep(6)
    before = _count_now(owner.pk)
    assert server.get(ME, token=token, headers=headers).status == 200
    assert _count_now(owner.pk) == before + 1
