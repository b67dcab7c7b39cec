"""The two hottest reads, answered in the event loop: no Django handler, no DRF.

A cached chatroom list (`GET /api/chatroom`, a hit) and the current user (`GET
/api/user/me`) are most of the API's traffic, and Django's middleware, DRF's dispatch and
the thread hop were most of their CPU (README, "Benchmarks"). This ASGI layer answers them
itself when it can prove Django would answer them alike, doing the same checks with the
same code:

- the bearer token: simplejwt's parsing and verification (`accounts.authentication`), the
  user's cached row and its checks (active, not revoked by a password change);
- the throttle: the request is counted in the same Redis round trip, and one over the rate
  goes to Django, which refuses it;
- the list: the query as the view reads it (`chatrooms.api.views.list_query`, the Host
  checked against ALLOWED_HOSTS), the field and key as the cache names them, nothing while
  this process has an invalidation to retry; served only when the page is cached;
- `/me`: the same payload function as the view's (`gemini_clone.user_payload`), its one
  query run on the web threads (`WEB_THREADS`), the connection given back as at the end of
  a Django request.

One Lua script reads the user's row (and the page) and, only when all are there, counts the
request (`core.throttling.request_count_if_all_found`). Anything else goes to Django
untouched, nothing counted: no token, a miss, a forgotten row, an unusual request header,
Redis down or slow (`core.redis_async`: each try bounded by the cache's socket timeout,
none for a second after a failure), anything unexpected. A request counted here and then
handed over (a token refused by the row's checks, the rate passed, an invalidation that
failed meanwhile, a database error for `/me`, after which `/me` goes to Django for a few
seconds) is counted by Django again: only refusals and
failures count twice. A deployment whose middleware or DRF classes differ from the ones
this was checked against (`_REVIEWED_MIDDLEWARE`) has the layer off.

The responses are Django's own: their headers are recorded from the first answer Django gave
in this process to the same kind of request (per path and scheme, as the security headers
depend on the scheme), and an answer here sends those with its body. Until Django has
answered one, nothing is answered here. Only requests whose headers all belong to a known
harmless set are answered or recorded (`_ANSWERABLE_HEADERS`): a header that could change
Django's answer (Origin, Cookie, If-None-Match...) sends the request to Django. The log line
and the metrics are the same (`core.request_log` is outside).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections
from django.urls import resolve
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from accounts.auth_cache import auth_user_forgotten_raw, auth_user_from_redis, auth_user_redis_key
from accounts.authentication import (
    CachedUserJWTAuthentication,
    cached_user_checked,
    token_user_id_of,
    token_validated,
)
from accounts.models import User
from chatrooms.api.views import list_query
from chatrooms.cache import list_cache_pending
from chatrooms.selectors import chatroom_list_page_cached_read
from core.negotiation import FirstRenderer
from core.redis_async import RedisPaused, cache_redis_scripts_supported
from core.redis_prefetch import RedisRead
from core.request_body import BODY_SCOPE_KEY
from core.request_context import request_facts_var
from core.throttling import UserRequestThrottle, request_count_if_all_found
from core.wsgi_bridge import wsgi_environ
from gemini_clone.user_payload import user_payload

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

LIST_PATH = "/api/chatroom"
ME_PATH = "/api/user/me"
ME_PAUSE_SECONDS = 5.0  # after a failed `/me` query, as long as a database outage is likely

# What clients, proxies and load tools send that changes nothing in Django's answer to these
# requests. Any other header sends the request to Django.
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
        b"content-length",  # only "0" (`_may_answer`)
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
        b"x-forwarded-port",
        b"forwarded",
        b"via",
        b"x-amzn-trace-id",
        b"traceparent",
        b"tracestate",
        b"cache-control",
        b"pragma",
        b"referer",
        b"dnt",
        b"priority",
        b"sec-fetch-dest",
        b"sec-fetch-mode",
        b"sec-fetch-site",
        b"sec-fetch-user",
        b"sec-ch-ua",
        b"sec-ch-ua-mobile",
        b"sec-ch-ua-platform",
    }
)

# What this layer was checked against: Django's middleware as settings.py sets it, and DRF's
# classes on both views. A deployment that changes them gets Django's answers only
# (`_stack_as_reviewed`); a header or a setting that one of them reads could change them.
_REVIEWED_MIDDLEWARE = [
    "core.middleware.ApiExceptionMiddleware",
    "core.middleware.RequestFactsMiddleware",
    "core.middleware.ApiBodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.static.StaticFilesMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "core.middleware.SiteOnlyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


@dataclass(frozen=True)
class _Token:
    token: Token
    user_id: int


@dataclass(frozen=True)
class _Authenticated:
    user_id: int
    user: User
    values: list[Any]  # of the extra reads, in order


class LoopAnswers:
    """ASGI middleware in front of the dispatch to Django (see the module's docstring).
    `threads` runs `/me`'s query: the web threads, which run it under Django otherwise."""

    def __init__(self, app: ASGIApp, *, threads: Executor) -> None:
        self.app = app
        self.threads = threads
        self._authenticator = CachedUserJWTAuthentication()
        self._answers = {LIST_PATH: self._chatroom_list, ME_PATH: self._me}
        # (path, is_secure) -> the headers of Django's answer
        self._headers: dict[tuple[str, bool], Headers] = {}
        self._routes: dict[str, str] = {}
        self._me_paused_until = float("-inf")
        self.enabled = _stack_as_reviewed()
        if not self.enabled:
            logger.warning("Middleware or DRF classes changed: every request goes to Django.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answers.get(scope["path"]) if self.enabled and _may_answer(scope) else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        try:
            request = WSGIRequest(wsgi_environ(scope, b""))
            # What Django reads of every request before the view, and refuses with a 400:
            request.get_host()  # DisallowedHost
            request.GET  # noqa: B018 - TooManyFieldsSent (DRF's negotiation reads it)
            kind = (scope["path"], request.is_secure())
        except Exception:  # whatever it is, Django answers it as it should
            await self.app(scope, receive, send)
            return
        headers = self._headers.get(kind)
        if headers is None:
            await self.app(scope, receive, self._recording(send, kind))
            return
        try:
            answered = await answer(request)
        except Exception:
            answered = None
        if answered is None:
            await self.app(scope, receive, send)
            return
        user_id, body = answered
        self._note_facts(scope["path"], user_id)
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

    async def _chatroom_list(self, request: WSGIRequest) -> tuple[int, bytes] | None:
        """The cached page, when Django would serve it."""
        token = self._token_of(request)
        if token is None:
            return None
        try:
            query = list_query(request, user_id=token.user_id)
        except DisallowedHost:
            return None
        if query is None:
            return None
        page = chatroom_list_page_cached_read(
            user_id=token.user_id,
            before_id=query.before_id,
            limit=query.limit,
            list_url=query.list_url,
        )
        if page is None:
            return None
        authenticated = await self._authenticated(token, also_read=[page])
        if authenticated is None or list_cache_pending():
            # An invalidation failed while the page was read: Django retries it first.
            return None
        return token.user_id, authenticated.values[0]

    async def _me(self, request: WSGIRequest) -> tuple[int, bytes] | None:
        """The user object, as Django would render it."""
        token = self._token_of(request)
        authenticated = None if token is None else await self._authenticated(token)
        if authenticated is None:
            return None
        if time.monotonic() < self._me_paused_until:
            return None
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(self.threads, _user_body, authenticated.user)
        except Exception as exc:
            # Django answers it (a 503 when the database is down). While it is, `/me` goes
            # straight there: trying here first would make each one wait twice.
            logger.warning("/me not answered in the event loop: %r", exc)
            self._me_paused_until = time.monotonic() + ME_PAUSE_SECONDS
            return None
        return authenticated.user_id, body

    def _token_of(self, request: WSGIRequest) -> _Token | None:
        """The request's valid token and its user id; None when it has none."""
        try:
            # simplejwt reads only `META` of the request, which a plain HttpRequest has.
            header = self._authenticator.get_header(request)  # type: ignore[arg-type]
            raw_token = None if header is None else self._authenticator.get_raw_token(header)
            if raw_token is None:
                return None
            token = token_validated(raw_token)
            return _Token(token, token_user_id_of(token))
        except (AuthenticationFailed, InvalidToken):
            return None

    async def _authenticated(
        self, token: _Token, *, also_read: Sequence[RedisRead] = ()
    ) -> _Authenticated | None:
        """The token's user, from its cached row, and `also_read`'s values, the request
        counted; None (nothing counted) when the row or a value is missing."""
        try:
            counted = await request_count_if_all_found(
                user_id=token.user_id,
                reads=[RedisRead(auth_user_redis_key(user_id=token.user_id)), *also_read],
                not_found=auth_user_forgotten_raw(),
            )
        except RedisPaused:
            return None
        except RedisError as exc:
            logger.warning("Not answered in the event loop, Redis failed: %r", exc)
            return None
        if counted is None or counted.wait is not None:
            return None
        raw_user, *values = counted.values
        user = auth_user_from_redis(raw_user)
        if user is None:
            return None
        try:
            cached_user_checked(user, token.token)
        except AuthenticationFailed:
            return None
        return _Authenticated(token.user_id, cast(User, user), values)

    def _recording(self, send: Send, kind: tuple[str, bool]) -> Send:
        """`send`, which also keeps the headers of the first answer Django gives that this
        layer would give too: a 200, and for the list a hit."""

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", ()))
                names = {name for name, _ in headers}
                if (
                    (kind[0] != LIST_PATH or (b"x-cache", b"HIT") in headers)
                    and b"content-length" in names
                    and b"set-cookie" not in names
                ):
                    self._headers.setdefault(kind, headers)
            await send(message)

        return recording_send

    def _note_facts(self, path: str, user_id: int) -> None:
        """What Django's RequestFactsMiddleware would tell the request's log line."""
        facts = request_facts_var.get()
        if facts is None:
            return
        route = self._routes.get(path)
        if route is None:
            route = self._routes[path] = resolve(path).route
        facts.route = route
        facts.path_is_ids_only = True
        facts.user_id = user_id


def _stack_as_reviewed() -> bool:
    if list(settings.MIDDLEWARE) != _REVIEWED_MIDDLEWARE:
        return False
    if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW:
        return False
    if not cache_redis_scripts_supported():
        return False
    for path in (LIST_PATH, ME_PATH):
        view = resolve(path).func.view_class  # type: ignore[attr-defined]
        if (
            list(view.authentication_classes) != [CachedUserJWTAuthentication]
            or list(view.permission_classes) != [IsAuthenticated]
            or list(view.throttle_classes) != [UserRequestThrottle]
            or list(view.renderer_classes) != [JSONRenderer]
            or view.content_negotiation_class is not FirstRenderer
            or view.versioning_class is not None
        ):
            return False
    me_view = resolve(ME_PATH).func
    return me_view.view_initkwargs.get("render_user") is user_payload  # type: ignore[attr-defined]


def _may_answer(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "GET"
        and not scope.get(BODY_SCOPE_KEY)
        and all(
            name in _ANSWERABLE_HEADERS and (name != b"content-length" or value == b"0")
            for name, value in scope["headers"]
        )
    )


def _user_body(user: User) -> bytes:
    """`/me`'s body, on a web thread; its database connection given back as at the end of a
    Django request (`request_finished`)."""
    close_old_connections()
    try:
        return JSONRenderer().render(user_payload(user))
    finally:
        close_old_connections()
