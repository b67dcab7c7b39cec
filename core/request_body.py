"""An ASGI layer that reads a request body in full, within the limit, before Django sees it.

Django's WSGI handler reads a body only up to its Content-Length, so a body sent with
`Transfer-Encoding: chunked` (no Content-Length) reached the views as an empty one. This
layer, in front of both Django handlers, reads such a body in the event loop, refuses it
with 413 as soon as it passes the limit (what follows is never held: uvicorn drains and
drops it), and hands Django the bytes with their Content-Length, so they are limited,
parsed and validated like any other body. When a request has both headers, the chunks are
the body (RFC 9112 §6.3); uvicorn's parser refuses such requests before they get here.

Bodies with a Content-Length within the limit are read here too: a client that disconnects
halfway is then never served what it sent so far (an adapter reading it lazily would
take the disconnect for the end of the body), and a slow sender waits in the event loop
instead of holding one of the WSGI threads. A declared length over the limit is refused
here, unread, on every path (the admin's too); one that is not a number passes on to
Django, which refuses it (400).

Requests without a body (neither header) pass straight through.

The body read is also left in the scope under `BODY_SCOPE_KEY`, for `core.wsgi_bridge`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from core.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_SCOPE_KEY = "request_body.bytes"
_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")
_TOO_LARGE = json.dumps(
    error_body("payload_too_large", "The request body is larger than 1 MiB.")
).encode()


class _TooLarge(Exception):
    pass


class RequestBodyReader:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if chunked:
            limit = self.max_bytes
        elif declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await _send_too_large(send)  # on any path, before a byte of it is read
                return
            limit = int(declared)
        else:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive, limit=limit)
        except _TooLarge:
            await _send_too_large(send)
            return
        if body is None:
            return  # the client left before its body was complete: nothing to serve
        if chunked:
            headers = [header for header in scope["headers"] if header[0] not in _FRAMING_HEADERS]
            headers.append((b"content-length", str(len(body)).encode()))
            scope = {**scope, "headers": headers}
        scope[BODY_SCOPE_KEY] = body
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, *, limit: int) -> bytes | None:
    """The whole body, or None when the client disconnects first; _TooLarge past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the body read already, then whatever the client sends next
    (its disconnect)."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _send_too_large(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_TOO_LARGE)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _TOO_LARGE})
