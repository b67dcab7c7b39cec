"""The ASGI entry point: what reaches Django's handlers, and what is refused before."""

import asyncio

import pytest

from gemini_clone.asgi import application

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
