"""The outermost ASGI layer: every HTTP response gets its `X-Request-ID`, and every request
one log line (method, path, route, status, duration, user id, request id) and its HTTP
metrics (core.metrics) when it ends.

It wraps everything, the 413s that `core.request_body` sends before Django runs included;
a reply stream's line is written when the stream closes, its duration the stream's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from core.metrics import http_request_observe
from core.request_context import (
    REQUEST_ID_HEADER,
    RequestFacts,
    request_facts_var,
    request_id_of,
    request_id_var,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = structlog.stdlib.get_logger("gemini_clone.request")

# A path that is not one of our routes with only ids in it (no route matched, a catch-all
# did, or the request was refused) is whatever the client sent, a phone number included: long
# digit runs keep their last two digits only. Control characters (the path is
# percent-decoded) are escaped, so a path cannot forge a line of the console format.
_LONG_NUMBER = re.compile(r"\d{7,}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _logged_path(path: str, *, ids_only: bool) -> str:
    if not ids_only:
        path = _LONG_NUMBER.sub(lambda number: "*" * (len(number[0]) - 2) + number[0][-2:], path)
    if "\\" in path:  # first, so a client's own "\u000a" cannot pass for an escaped one
        path = path.replace("\\", "\\\\")
    return _CONTROL.sub(lambda char: f"\\u{ord(char[0]):04x}", path)


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        facts = RequestFacts()
        id_token = request_id_var.set(request_id)
        facts_token = request_facts_var.set(facts)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            logger.info(
                "request",
                method=scope["method"],
                # Ids are ours only once the route served them: a refusal (a 404, a 401 before
                # anything was looked up) may carry whatever number the client typed.
                path=_logged_path(
                    scope["path"], ids_only=facts.path_is_ids_only and 200 <= status < 400
                ),
                route=facts.route,
                status=status or None,  # None: the client left before any answer
                duration_ms=round(seconds * 1000, 1),
                user_id=facts.user_id,
            )
            if status:
                http_request_observe(
                    method=scope["method"], route=facts.route, status=status, seconds=seconds
                )
            request_facts_var.reset(facts_token)
            request_id_var.reset(id_token)
