"""The ASGI entry point: what reaches Django's handlers, and what is refused before."""

import asyncio
import re
import threading
from collections.abc import Iterator

import pytest
from django.urls import URLResolver, get_resolver

from gemini_clone.asgi import Route, _route_of_known, application, django_wsgi_slow, route_of

pytestmark = pytest.mark.django_db

MIB = 1 << 20


def _serve(
    method: str, path: str, *, chunks: int, content_length: int | None = None, chunked=False
):
    """Run one request through `application`; count the 1 MiB body chunks it pulled."""
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        if pulled < chunks:
            pulled += 1
            return {"type": "http.request", "body": b"x" * MIB, "more_body": pulled < chunks}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(application(scope, receive, send), 30))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, pulled


STREAM = "/api/chatroom/1/message/1/stream"


def test_a_huge_declared_body_to_the_stream_route_is_refused_unread():
    status, pulled = _serve("POST", STREAM, chunks=50, content_length=50 * MIB)
    assert (status, pulled) == (413, 0)


def test_a_chunked_body_to_the_stream_route_is_not_read():
    status, pulled = _serve("POST", STREAM, chunks=50)
    assert (status, pulled) == (405, 0)


def test_a_huge_declared_body_to_a_sync_route_is_refused_unread():
    status, pulled = _serve("POST", "/api/auth/login", chunks=50, content_length=50 * MIB)
    assert (status, pulled) == (413, 0)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", STREAM), ("POST", STREAM), ("POST", "/api/auth/login")]
)
def test_a_huge_chunked_body_is_read_no_further_than_the_limit(method, path):
    status, pulled = _serve(method, path, chunks=50, chunked=True)
    assert (status, pulled) == (413, 2)  # 1 MiB was the limit, the second passed it


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/api/chatroom", Route.SYNC),
        ("POST", "/api/chatroom/1/message", Route.SYNC),
        ("GET", "/api/user/me", Route.SYNC),
        ("POST", "/api/auth/send-otp", Route.SYNC),
        ("GET", STREAM, Route.ASYNC),
        ("HEAD", STREAM, Route.ASYNC),
        ("POST", STREAM, Route.SYNC),  # a 405, from a sync view
        ("GET", "/api/nothing/here", Route.SYNC),
        ("GET", "/nothing/here", Route.SYNC),
        # What waits on Stripe, hashes a password or builds a whole export: slow threads.
        ("POST", "/api/auth/login", Route.SLOW),
        ("POST", "/api/auth/signup", Route.SLOW),
        ("POST", "/api/auth/reset-password", Route.SLOW),
        ("POST", "/api/auth/change-password", Route.SLOW),
        ("DELETE", "/api/user/me", Route.SLOW),
        ("GET", "/api/user/me/export", Route.SLOW),
        ("HEAD", "/api/user/me/export", Route.SLOW),
        ("head", "/api/user/me/export", Route.SLOW),
        ("GET", "/api/chatroom/1/export", Route.SLOW),
        ("GET", "/api/schema/", Route.SLOW),
        ("GET", "/api/docs/", Route.SYNC),
        ("HEAD", "/api/user/me", Route.SYNC),
        ("POST", "/api/subscribe/pro", Route.SLOW),
        ("POST", "/api/subscription/portal", Route.SLOW),
        ("POST", "/api/webhook/stripe", Route.SLOW),
        ("GET", "/admin/login/", Route.SLOW),
        ("POST", "/admin/login/", Route.SLOW),
    ],
)
def test_each_request_goes_to_its_threads(method, path, route):
    assert route_of(method, path) is route


def test_the_routes_of_paths_that_differ_only_by_ids_are_resolved_once():
    route_of("POST", "/api/chatroom/1/message")
    route_of("GET", "/api/chatroom/1/message/2/stream")
    resolved = _route_of_known.cache_info().misses
    for chatroom_id in range(2, 50):
        assert route_of("POST", f"/api/chatroom/{chatroom_id}/message") is Route.SYNC
        stream = f"/api/chatroom/{chatroom_id}/message/{chatroom_id * 7}/stream"
        assert route_of("GET", stream) is Route.ASYNC
    assert _route_of_known.cache_info().misses == resolved


def test_no_route_has_a_number_of_its_own():
    """What lets `route_of` cache a path with its ids as 0: a number in a path is an id."""

    def routes(patterns: list, prefix: str = "") -> Iterator[str]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from routes(pattern.url_patterns, route)
            else:
                yield route

    numbers = [
        route
        for route in routes(get_resolver().url_patterns)
        if any(re.fullmatch(r"\^?[0-9]+\$?", segment) for segment in route.split("/"))
    ]
    assert numbers == []


def test_a_slow_request_does_not_hold_up_the_others():
    """Every slow thread busy (as a Stripe that takes seconds would keep them): the API's own
    threads still answer."""
    blockers = [threading.Event() for _ in range(django_wsgi_slow.executor._max_workers)]
    started = threading.Barrier(len(blockers) + 1)

    def hold(event: threading.Event) -> None:
        started.wait()
        event.wait(30)

    for event in blockers:
        django_wsgi_slow.executor.submit(hold, event)
    try:
        started.wait(10)
        status, _ = _serve("GET", "/healthz", chunks=0)
        assert status == 200
    finally:
        for event in blockers:
            event.set()
