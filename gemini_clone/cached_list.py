"""Cached chatroom-list hits, answered in the event loop: no thread, no Django handler, no DRF.

The cached list is the API's most frequent request, and a hit is one Redis round trip
(`core.redis_prefetch`); what it cost beyond that was the thread hop, Django's middleware
and DRF's dispatch, three quarters of its CPU (README, "Benchmarks"). This ASGI layer answers
a `GET /api/chatroom` itself when it can prove Django would answer it with the cached page,
doing the same checks with the same code:

- the bearer token: simplejwt's parsing and verification (`accounts.authentication`), the
  user's cached row and its checks (active, not revoked by a password change);
- the throttle: the request is counted in the same round trip, and one over the rate goes
  to Django, which refuses it;
- the page: the query as the view reads it (`chatrooms.api.views.list_query`, the Host
  checked against ALLOWED_HOSTS), the field and key as the cache names them, and nothing
  while this process has an invalidation to retry.

One Lua script reads the user's row and the page and, only when both are there, counts the
request (`core.throttling.request_count_if_all_found`). Anything else goes to Django
untouched, nothing counted: no token, a miss, a forgotten row, an unusual request header,
Redis down (for a second after a failure, nothing is tried here). A token refused
after the count (inactive user, revoked token) goes to Django too, which counts it again:
the only request counted twice, and only one that is refused.

The response is Django's own: its headers are recorded from the first hit Django served in
this process (per scheme, as the security headers depend on it), and a hit here sends those
with its body. Until Django has served one, nothing is answered here. Only requests whose
headers are all of a known harmless set are answered or recorded (`_ANSWERABLE_HEADERS`):
a header that could change Django's answer (Origin, Cookie, If-None-Match...) sends the
request to Django. The log line and metrics are the same (`core.request_log` is outside).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.urls import resolve
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken

from accounts.auth_cache import (
    auth_user_forgotten_raw,
    auth_user_from_redis,
    auth_user_redis_key,
)
from accounts.authentication import (
    CachedUserJWTAuthentication,
    cached_user_checked,
    token_user_id_of,
    token_validated,
)
from chatrooms.api.views import list_query
from chatrooms.selectors import chatroom_list_page_cached_read
from core.redis_prefetch import RedisRead
from core.request_body import BODY_SCOPE_KEY
from core.request_context import request_facts_var
from core.throttling import request_count_if_all_found
from core.wsgi_bridge import wsgi_environ

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

LIST_PATH = "/api/chatroom"
REDIS_PAUSE_SECONDS = 1.0

# What clients, proxies and load tools send that changes nothing in Django's answer to a
# list request. Any other header sends the request to Django.
_ANSWERABLE_HEADERS = frozenset(
    {
        b"host",
        b"authorization",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"user-agent",
        b"connection",
        b"keep-alive",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
    }
)


class CachedListHits:
    """ASGI middleware in front of the dispatch to Django (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._authenticator = CachedUserJWTAuthentication()
        self._headers_by_scheme: dict[bool, Headers] = {}  # is_secure -> Django's headers
        self._route: str | None = None
        self._redis_failed_at = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._may_answer(scope):
            await self.app(scope, receive, send)
            return
        request = WSGIRequest(wsgi_environ(scope, b""))
        secure = request.is_secure()
        headers = self._headers_by_scheme.get(secure)
        if headers is None:
            await self.app(scope, receive, self._recording(send, secure))
            return
        hit = await self._hit(request)
        if hit is None:
            await self.app(scope, receive, send)
            return
        user_id, body = hit
        self._note_facts(user_id)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (name, str(len(body)).encode() if name == b"content-length" else value)
                    for name, value in headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _may_answer(scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == LIST_PATH
            and not scope.get(BODY_SCOPE_KEY)
            and all(name in _ANSWERABLE_HEADERS for name, _ in scope["headers"])
        )

    async def _hit(self, request: WSGIRequest) -> tuple[int, bytes] | None:
        """The user's id and the cached page, when Django would serve that page."""
        if time.monotonic() - self._redis_failed_at < REDIS_PAUSE_SECONDS:
            return None
        try:
            # simplejwt reads only `META` of the request, which a plain HttpRequest has.
            header = self._authenticator.get_header(request)  # type: ignore[arg-type]
            raw_token = None if header is None else self._authenticator.get_raw_token(header)
            if raw_token is None:
                return None
            token = token_validated(raw_token)
            user_id = token_user_id_of(token)
            query = list_query(request, user_id=user_id)
        except (AuthenticationFailed, InvalidToken, DisallowedHost):
            return None
        if query is None:
            return None
        page = chatroom_list_page_cached_read(
            user_id=user_id,
            before_id=query.before_id,
            limit=query.limit,
            list_url=query.list_url,
        )
        if page is None:
            return None
        try:
            counted = await request_count_if_all_found(
                user_id=user_id,
                reads=[RedisRead(auth_user_redis_key(user_id=user_id)), page],
                not_found=auth_user_forgotten_raw(),
            )
        except RedisError as exc:
            logger.warning("Cached list not read in the event loop: %r", exc)
            self._redis_failed_at = time.monotonic()
            return None
        if counted is None or counted.wait is not None:
            return None
        raw_user, body = counted.values
        user = auth_user_from_redis(raw_user)
        if user is None:
            return None
        try:
            cached_user_checked(user, token)
        except AuthenticationFailed:
            return None
        return user_id, body

    def _recording(self, send: Send, secure: bool) -> Send:
        """`send`, which also keeps the headers of the first hit Django answers."""

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", ()))
                if (b"x-cache", b"HIT") in headers and not any(
                    name == b"set-cookie" for name, _ in headers
                ):
                    self._headers_by_scheme.setdefault(secure, headers)
            await send(message)

        return recording_send

    def _note_facts(self, user_id: int) -> None:
        """What Django's RequestFactsMiddleware would tell the request's log line."""
        facts = request_facts_var.get()
        if facts is None:
            return
        if self._route is None:
            self._route = resolve(LIST_PATH).route
        facts.route = self._route
        facts.path_is_ids_only = True
        facts.user_id = user_id
