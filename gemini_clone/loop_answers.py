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
- the Host (ALLOWED_HOSTS) and the query string, read as Django reads them;
- the list: the query as the view parses it (`chatrooms.api.views.list_query`), the field
  and key as the cache names them; served only when the page is cached;
- `/me`: the same payload function as the view's (`gemini_clone.user_payload`), its one
  query run on the web threads (`WEB_THREADS`), the connection given back as at the end of
  a Django request.

One Lua script reads the user's row (and the page) and, only when all are there, counts the
request (`core.throttling.request_count_if_all_found`).

A request goes to Django, untouched, when:

- it has no token or a bad one, or a header outside a known harmless set
  (`_ANSWERABLE_HEADERS`: Origin, Cookie, If-None-Match... could change Django's answer);
- the user's row or the page is not cached, or the row is forgotten;
- this process has a list invalidation to retry (`chatrooms.cache.list_cache_pending`);
- Redis is down or slow (`core.redis_async`: each try bounded by the cache's socket
  timeout, then a pause), or a `/me` query failed (then `/me` goes to Django for
  `ME_PAUSE_SECONDS`, one trial a pause: trying here first would make each wait twice);
- Django has not yet answered such a request in this process (below), or anything
  unexpected happens here (logged);
- the deployment's middleware or DRF classes differ from the ones this was checked against
  (`_REVIEWED_MIDDLEWARE`): the layer is off.

Nothing is counted for those, except a request counted here and then handed over (a token
refused by the row's checks, the rate passed, an invalidation that failed during the read,
a failed `/me` query): it carries the count's mark to Django (`_counted_marked`), which
reads the count without adding to it. Only a Redis that fails after counting can still
count a request twice.

The responses are Django's own: their headers are recorded from the first answer Django gave
in this process to the same kind of request (per path and scheme, as the security headers
depend on the scheme), and an answer here sends those with its body. Only headers known to
be the same for every user are recorded (`_REPLAYABLE_RESPONSE_HEADERS`): an answer with any
other is never replayed. The log line and the metrics are the same (`core.request_log` is
outside).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from django.conf import settings
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
from core.breaker import Breaker
from core.negotiation import FirstRenderer
from core.redis_async import RedisPaused, cache_redis_scripts_supported
from core.redis_prefetch import RedisRead
from core.request_body import BODY_SCOPE_KEY
from core.request_context import request_facts_var
from core.throttling import COUNTED_ENVIRON_KEY, UserRequestThrottle, request_count_if_all_found
from core.wsgi_bridge import EXTRA_ENVIRON_SCOPE_KEY, wsgi_environ
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

# The headers of Django's answers to the two requests, all the same for every user and
# request: the only ones recorded and replayed (content-length is set per body).
_REPLAYABLE_RESPONSE_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-cache",
        b"allow",
        b"vary",
        b"x-frame-options",
        b"x-content-type-options",
        b"referrer-policy",
        b"cross-origin-opener-policy",
        b"strict-transport-security",
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


class _AnswerKind(NamedTuple):
    """What the recorded headers depend on."""

    path: str
    secure: bool


@dataclass(frozen=True)
class _Answer:
    user_id: int
    body: bytes


@dataclass(frozen=True)
class _VerifiedToken:
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

    def __init__(
        self, app: ASGIApp, *, threads: Executor, me_pause_seconds: float = ME_PAUSE_SECONDS
    ) -> None:
        self.app = app
        self.threads = threads
        self._authenticator = CachedUserJWTAuthentication()
        self._responders = {LIST_PATH: self._chatroom_list, ME_PATH: self._me}
        self._headers: dict[_AnswerKind, Headers] = {}  # of Django's answers
        self._routes: dict[str, str] = {}
        self._me_queries = Breaker(me_pause_seconds)
        self._error_logged_at = float("-inf")
        self.enabled = _stack_as_reviewed()
        if not self.enabled:
            logger.warning("Middleware or DRF classes changed: every request goes to Django.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        respond = self._responders.get(scope["path"]) if self.enabled else None
        if respond is None or not _may_answer(scope):
            await self.app(scope, receive, send)
            return
        try:
            request = WSGIRequest(wsgi_environ(scope, b""))
            # What Django reads of every request before the view, and refuses with a 400:
            request.get_host()  # DisallowedHost
            request.GET  # noqa: B018 - TooManyFieldsSent (DRF's negotiation reads it)
            kind = _AnswerKind(scope["path"], request.is_secure())
        except Exception:  # whatever it is, Django answers it as it should
            await self.app(scope, receive, send)
            return
        headers = self._headers.get(kind)
        if headers is None:
            await self.app(scope, receive, self._recording(send, kind))
            return
        try:
            answer = await respond(request)
        except Exception:
            self._log_error()
            answer = None
        if answer is None:
            await self.app(_counted_marked(scope, request), receive, send)
            return
        self._note_facts(scope["path"], answer.user_id)
        body_length = str(len(answer.body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (name, body_length if name == b"content-length" else value)
                    for name, value in headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _chatroom_list(self, request: WSGIRequest) -> _Answer | None:
        """The cached page, when Django would serve it."""
        token = self._token_of(request)
        if token is None:
            return None
        query = list_query(request, user_id=token.user_id)
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
        authenticated = await self._authenticated(request, token, also_read=[page])
        if authenticated is None or list_cache_pending():
            # An invalidation failed while the page was read: Django retries it first.
            return None
        return _Answer(token.user_id, authenticated.values[0])

    async def _me(self, request: WSGIRequest) -> _Answer | None:
        """The user object, as Django would render it."""
        token = self._token_of(request)
        if token is None or not self._me_queries.allows():
            return None
        authenticated = await self._authenticated(request, token)
        if authenticated is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(self.threads, _user_body, authenticated.user)
        except Exception as exc:
            # Django answers it (a 503 when the database is down), and the next ones too for
            # a while: trying here first would make each of them wait twice.
            logger.warning("/me not answered in the event loop: %r", exc)
            self._me_queries.failed()
            return None
        self._me_queries.succeeded()
        return _Answer(authenticated.user_id, body)

    def _token_of(self, request: WSGIRequest) -> _VerifiedToken | None:
        """The request's valid token and its user id; None when it has none."""
        try:
            # simplejwt reads only `META` of the request, which a plain HttpRequest has.
            header = self._authenticator.get_header(request)  # type: ignore[arg-type]
            raw_token = None if header is None else self._authenticator.get_raw_token(header)
            if raw_token is None:
                return None
            token = token_validated(raw_token)
            return _VerifiedToken(token, token_user_id_of(token))
        except (AuthenticationFailed, InvalidToken):
            return None

    async def _authenticated(
        self, request: WSGIRequest, token: _VerifiedToken, *, also_read: Sequence[RedisRead] = ()
    ) -> _Authenticated | None:
        """The token's user, from its cached row, and `also_read`'s values, the request
        counted (and marked so in `request.META`, for Django if it gets the request); None
        (nothing counted) when the row or a value is missing."""
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
        if counted is None:
            return None
        request.META[COUNTED_ENVIRON_KEY] = token.user_id
        if counted.wait is not None:
            return None  # Django refuses it
        raw_user, *values = counted.values
        user = auth_user_from_redis(raw_user)
        if user is None:
            return None
        try:
            cached_user_checked(user, token.token)
        except AuthenticationFailed:
            return None
        return _Authenticated(token.user_id, cast(User, user), values)

    def _recording(self, send: Send, kind: _AnswerKind) -> Send:
        """`send`, which also keeps the headers of the first answer Django gives that this
        layer would give too: a 200, for the list a hit, and only replayable headers."""

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", ()))
                if _may_replay(kind, headers):
                    self._headers.setdefault(kind, headers)
            await send(message)

        return recording_send

    def _log_error(self) -> None:
        """A bug here turns the layer off for the request, which Django answers: logged, at
        most once a minute, so that it is seen without flooding the log."""
        now = time.monotonic()
        if now - self._error_logged_at >= 60:
            self._error_logged_at = now
            logger.exception("Not answered in the event loop: unexpected error")

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


def _counted_marked(scope: Scope, request: WSGIRequest) -> Scope:
    """The scope to hand over: with the count's mark when the request was counted here, so
    that Django reads the count without adding to it (`core.throttling`)."""
    counted_for = request.META.get(COUNTED_ENVIRON_KEY)
    if counted_for is None:
        return scope
    extra = {**scope.get(EXTRA_ENVIRON_SCOPE_KEY, {}), COUNTED_ENVIRON_KEY: counted_for}
    return {**scope, EXTRA_ENVIRON_SCOPE_KEY: extra}


def _may_replay(kind: _AnswerKind, headers: Headers) -> bool:
    names = {name for name, _ in headers}
    return (
        (kind.path != LIST_PATH or (b"x-cache", b"HIT") in headers)
        and b"content-length" in names
        and names <= _REPLAYABLE_RESPONSE_HEADERS
    )


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
