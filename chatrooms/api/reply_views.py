"""A reply's live stream (Server-Sent Events) and its cancel endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, URLResolver, get_resolver
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.generators import EndpointEnumerator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions as drf
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.models import User
from chatrooms import services
from chatrooms.api import serializers as s
from chatrooms.following import reply_events
from chatrooms.metrics import open_streams
from chatrooms.payloads import message_payload
from chatrooms.selectors import message_aget
from chatrooms.stream_slots import StreamSlot
from chatrooms.streaming import SseEvent
from core.db import db_connection_release
from core.errors import ApiError
from core.exception_handler import render_exception
from core.schema import ErrorResponseSerializer
from core.throttling import request_wait

_KEEPALIVE = settings.REPLY_STREAM_KEEPALIVE_SECONDS
_PER_USER = settings.MAX_OPEN_STREAMS_PER_USER
_PER_PROCESS = settings.MAX_OPEN_STREAMS_PER_PROCESS

STREAM_DESCRIPTION = f"""\
Server-Sent Events (`text/event-stream`) of one reply:

- `event: delta` with `{{"text": "..."}}` for each chunk;
- then exactly one `event: done` whose data is the final message, whatever its status
  (`completed`, `failed`, `blocked`, `canceled`); the stream ends after it.

The deltas joined equal the final `content`. A client that connects while the reply is being
generated first gets everything generated so far, then the rest as it comes; one that
connects after the end gets the full text as one delta and `done` at once. A comment line
`: keep-alive` comes every {_KEEPALIVE} s (REPLY_STREAM_KEEPALIVE_SECONDS) while nothing else
does.

`event: error` with `{{code, message}}` ends the stream when it cannot go on:

- `stream_restarted`: generation started over (a retry after an error, or another worker
  took over from one that died) after this client had received text. Reconnect: the new
  stream starts from the beginning of the new attempt.
- `stream_unavailable`: the live stream is down; poll the message instead.
- `not_found`: the message was deleted meanwhile.

Should the live stream lose chunks (its Redis restarted empty mid-reply), the deltas stop at
the hole and the rest of the text comes as one delta just before `done`.

A user message streams too: its content as one delta, then `done`.

At most {_PER_USER} streams of one user are open at once (MAX_OPEN_STREAMS_PER_USER, across
all servers), and {_PER_PROCESS} on one server process (MAX_OPEN_STREAMS_PER_PROCESS): past
either, 429 `too_many_streams` with `details.limit` and `Retry-After`. A stream's slot is
given back when it ends or its client disconnects (should a server die: {_KEEPALIVE * 3} s
later).
"""


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description)


def _error_response(exc: Exception) -> HttpResponse:
    """The contract's error JSON for an exception raised outside DRF's request cycle."""
    rendered = render_exception(exc)
    response = JsonResponse(rendered.data, status=rendered.status_code)
    for header, value in rendered.items():
        if header.lower() != "content-type":
            response[header] = value
    return response


async def _authenticate(request: HttpRequest) -> User:
    """The same authentication as every DRF view (the Bearer access token)."""
    classes = cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    for authenticator_class in classes:
        result = await sync_to_async(authenticator_class().authenticate)(Request(request))
        if result is not None:
            return cast(User, result[0])
    raise drf.NotAuthenticated()


@csrf_exempt
async def reply_stream(request: HttpRequest, chatroom_id: int, message_id: int) -> HttpResponseBase:
    """GET: the message's events as Server-Sent Events (see STREAM_DESCRIPTION).

    Async: an open stream waits on Redis in the event loop and keeps no database connection,
    so hundreds of them neither exhaust PostgreSQL nor hold up the API.
    """
    if request.method != "GET":
        response = _error_response(drf.MethodNotAllowed(str(request.method)))
        response["Allow"] = "GET"
        return response
    try:
        user = await _authenticate(request)
        request.user = user  # for the request's log line
        wait = await sync_to_async(request_wait)(request, user_id=user.pk)
        if wait is not None:
            raise drf.Throttled(wait)
        reply = await message_aget(user=user, chatroom_id=chatroom_id, message_id=message_id)
        slot = StreamSlot(user_id=user.pk)
        await slot.take()
    except (ApiError, drf.APIException) as exc:
        return _error_response(exc)
    finally:
        await sync_to_async(db_connection_release)()
    # From here the slot is the stream's, which gives it back when it ends; a stream dropped
    # before it ever runs (the client left first) frees its slot with it (stream_slots).
    stream = StreamingHttpResponse(
        _sse_body(reply_events(reply=reply), slot=slot), content_type="text/event-stream"
    )
    stream["Cache-Control"] = "no-cache"
    stream["X-Accel-Buffering"] = "no"
    return stream


async def _sse_body(events: AsyncIterator[SseEvent], *, slot: StreamSlot) -> AsyncIterator[bytes]:
    """The stream's bytes; its slot is renewed while it lasts and given back when it ends,
    also when Django cancels it because the client went away."""
    async with slot:
        open_streams.inc()
        try:
            async for event in events:
                await slot.renew_if_due()
                yield sse_encode(event)
        finally:
            open_streams.dec()


def sse_encode(event: SseEvent) -> bytes:
    if event.name is None:
        return b": keep-alive\n\n"
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.name}\ndata: {data}\n\n".encode()


class ReplyCancelView(APIView):
    @extend_schema(
        operation_id="chatroom_message_cancel",
        summary="Stop a reply being generated",
        description=(
            "A `pending` or `streaming` reply becomes `canceled` and keeps the text generated "
            "so far: this answer's `content` is that text, the same the stream's `done` and a "
            "later GET show. (Only while Redis is unavailable may it lag: the worker then stores "
            "the text when it learns of the cancel, within a third of REPLY_LEASE_SECONDS.) A "
            "canceled prompt still counts against the daily limit. A reply that already ended "
            "is returned unchanged."
        ),
        request=None,
        responses={
            200: OpenApiResponse(
                s.MessageSerializer, description="The reply: canceled, or as it ended."
            ),
            409: _error("The message is the user's own, not a reply (`not_cancelable`)."),
        },
    )
    def post(self, request: Request, chatroom_id: int, message_id: int) -> Response:
        reply = services.reply_cancel(
            user=cast(User, request.user), chatroom_id=chatroom_id, message_id=message_id
        )
        return Response(message_payload(reply))


# --- OpenAPI ------------------------------------------------------------------------------------


class ReplyStreamSchemaView(APIView):
    """Never routed: it stands in for the async `reply_stream` view in the OpenAPI schema."""

    @extend_schema(
        operation_id="chatroom_message_stream",
        summary="Follow a reply as Server-Sent Events",
        description=STREAM_DESCRIPTION,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="`event: delta` frames, then one `event: done` (see above).",
            ),
            405: _error("Only GET (`method_not_allowed`)."),
            429: _error(
                "`too_many_streams` (see above), or `rate_limited`: the request rate "
                "applies to opening a stream."
            ),
        },
    )
    def get(self, request: Request, chatroom_id: int, message_id: int) -> Response:
        raise NotImplementedError


def schema_add_reply_stream(
    endpoints: list[tuple[str, str, str, Any]],
) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular preprocessing hook: documents the SSE route, which DRF cannot see."""
    route = _route_of(reply_stream, get_resolver().url_patterns, prefix="")
    if route is None:
        return endpoints
    path = EndpointEnumerator().get_path_from_regex(route)
    return [*endpoints, (path, route, "GET", ReplyStreamSchemaView.as_view())]


def _route_of(view: object, patterns: list[URLPattern | URLResolver], *, prefix: str) -> str | None:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found = _route_of(view, pattern.url_patterns, prefix=route)
            if found is not None:
                return found
        elif pattern.callback is view:
            return route
    return None
