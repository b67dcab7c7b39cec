"""Chatroom and message endpoints: validate the request, call one service or selector, render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from chatrooms import idempotency, selectors, services
from chatrooms.api import serializers as s
from chatrooms.cursors import list_cursor_decode
from chatrooms.errors import CursorInvalid
from chatrooms.models import Message
from chatrooms.payloads import chatroom_payload, message_payload
from chatrooms.replies import reply_settle_if_abandoned
from chatrooms.selectors import render_json
from core.pagination import page_limit
from core.redis_prefetch import RedisRead, prefetched_values
from core.schema import ErrorResponseSerializer
from usage.selectors import rate_limit_headers

IDEMPOTENCY_KEY_MAX_CHARS = 255

_LIMIT = OpenApiParameter(
    "limit",
    int,
    description=(
        f"Page size; default {settings.PAGE_SIZE_DEFAULT}, values above "
        f"{settings.PAGE_SIZE_MAX} become {settings.PAGE_SIZE_MAX}."
    ),
)
_CURSOR = OpenApiParameter(
    "cursor",
    str,
    description=(
        "Opaque and signed; copy it from `next`. Any other value, or a cursor handed to "
        "another user, is a 400 `invalid_cursor`."
    ),
)
_BEFORE = OpenApiParameter(
    "before", int, description="A message id: only messages older than it. Omit for the newest."
)
_X_CACHE = OpenApiParameter(
    "X-Cache",
    str,
    location=OpenApiParameter.HEADER,
    response=[200],
    enum=["HIT", "MISS"],
    description="Whether the page came from the per-user cache. The body is the same.",
)
_IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    description=(
        f"Up to {IDEMPOTENCY_KEY_MAX_CHARS} characters, unique per user. A retry with the "
        "same key answers the first 202 again (same body and ids, header "
        "`Idempotent-Replayed: true`) and is counted once. The same key with another "
        "chatroom or content: 422 `idempotency_key_mismatch`. Errors (400, 404, 409, 429) "
        "are not remembered: a retry after one is evaluated again."
    ),
)
_RATE_LIMIT_HEADERS = [
    OpenApiParameter(
        name,
        int,
        location=OpenApiParameter.HEADER,
        response=[202],
        description=f"{text} Basic users only: Pro users have no daily limit and get none.",
    )
    for name, text in (
        ("X-RateLimit-Limit", "Prompts a day."),
        ("X-RateLimit-Remaining", "Prompts left today, after this one."),
        ("X-RateLimit-Reset", "When the count resets, in epoch seconds."),
    )
]


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description)


def _user(request: Request) -> User:
    return cast(User, request.user)


def _invalid(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: [message]})


def _before_param(request: Request) -> int | None:
    raw = request.query_params.get("before")
    if raw is None or raw == "":
        return None
    if not raw.isdecimal() or len(raw) > 18 or int(raw) <= 0:
        raise _invalid("before", "A message id (a positive integer) is required.")
    return int(raw)


def _list_url(request: Request) -> str:
    return request.build_absolute_uri(request.path)


@dataclass(frozen=True)
class ListQuery:
    before_id: int | None
    limit: int
    list_url: str


def list_query(request: HttpRequest, *, user_id: int) -> ListQuery | None:
    """The page a list request asks for; None when its cursor is not this user's. Raises
    DisallowedHost when its Host is not one of ALLOWED_HOSTS."""
    cursor = request.GET.get("cursor")
    before_id = None
    if cursor:
        before_id = list_cursor_decode(user_id=user_id, cursor=cursor)
        if before_id is None:
            return None
    return ListQuery(before_id, page_limit(request.GET), request.build_absolute_uri(request.path))


def _detail_body(detail: selectors.ChatroomDetail) -> dict[str, Any]:
    return {
        **chatroom_payload(detail.chatroom),
        "messages": [message_payload(message) for message in detail.messages],
        "has_more_messages": detail.has_more_messages,
    }


class ChatroomListCreateView(APIView):
    _query: tuple[int, ListQuery | None] | None = None  # DRF makes a view per request

    def redis_reads_with_auth(self, request: Request, user_id: int) -> list[RedisRead]:
        """A GET's cached page is read in authentication's Redis round trip
        (`core.redis_prefetch`): one round trip per cache hit."""
        if request.method != "GET":
            return []
        query = self._query_of(request, user_id=user_id)
        if query is None:
            return []
        return selectors.chatroom_list_page_reads(
            user_id=user_id, before_id=query.before_id, limit=query.limit, list_url=query.list_url
        )

    def _query_of(self, request: Request, *, user_id: int) -> ListQuery | None:
        """`list_query`, worked out once per request (authentication asks for it first)."""
        if self._query is None or self._query[0] != user_id:
            self._query = (user_id, list_query(request._request, user_id=user_id))
        return self._query[1]

    @extend_schema(
        operation_id="chatroom_list",
        summary="List my chatrooms",
        description=(
            "Newest first, paged with an opaque cursor. Served from a per-user cache "
            f"({settings.CHATROOM_LIST_CACHE_TTL} seconds, CHATROOM_LIST_CACHE_TTL) that every "
            "create, rename, delete and generated title invalidates at once. Up to "
            f"{settings.CHATROOM_LIST_CACHE_MAX_PAGES} pages and "
            f"{settings.CHATROOM_LIST_CACHE_MAX_BYTES} bytes of them are cached per user; "
            "any other page is served from the database, with the same body."
        ),
        parameters=[_LIMIT, _CURSOR, _X_CACHE],
        responses={
            200: s.ChatroomPageSerializer,
            400: _error("`invalid_cursor`: a cursor this server did not hand out to this user."),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        user_id = _user(request).pk
        query = self._query_of(request, user_id=user_id)
        if query is None:
            raise CursorInvalid()
        page = selectors.chatroom_list_page(
            user_id=user_id,
            before_id=query.before_id,
            limit=query.limit,
            list_url=query.list_url,
            prefetched=prefetched_values(request._request),
        )
        # The body is ready JSON bytes (from the cache or freshly rendered): no re-encoding.
        response = HttpResponse(page.body, content_type="application/json")
        response["X-Cache"] = "HIT" if page.cache_hit else "MISS"
        return response

    @extend_schema(
        operation_id="chatroom_create",
        summary="Create a chatroom",
        request=s.ChatroomWriteSerializer,
        responses={
            201: s.ChatroomSerializer,
            409: _error(
                "`chatroom_limit_reached`: the user already has "
                f"{settings.MAX_CHATROOMS_PER_USER} chatrooms (MAX_CHATROOMS_PER_USER, in "
                "`details.limit`); delete one to create another."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = s.ChatroomWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        chatroom = services.chatroom_create(
            user=_user(request),
            name=data.get("name"),
            system_prompt=data.get("system_prompt", ""),
        )
        return Response(chatroom_payload(chatroom), status=201)


class ChatroomDetailView(APIView):
    @extend_schema(
        operation_id="chatroom_retrieve",
        summary="A chatroom with its newest messages",
        responses={200: s.ChatroomDetailSerializer},
    )
    def get(self, request: Request, chatroom_id: int) -> Response:
        detail = selectors.chatroom_detail(user=_user(request), chatroom_id=chatroom_id)
        return Response(_detail_body(detail))

    @extend_schema(
        operation_id="chatroom_update",
        summary="Rename a chatroom or change its system prompt",
        description="Only the fields sent change. `name: null` brings back the generated title.",
        request=s.ChatroomWriteSerializer,
        responses={200: s.ChatroomSerializer},
    )
    def patch(self, request: Request, chatroom_id: int) -> Response:
        serializer = s.ChatroomWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        chatroom = services.chatroom_update(
            user=_user(request),
            chatroom_id=chatroom_id,
            **s.chatroom_changes(serializer.validated_data),
        )
        return Response(chatroom_payload(chatroom))

    @extend_schema(
        operation_id="chatroom_delete",
        summary="Delete a chatroom and all its messages",
        responses={204: None},
    )
    def delete(self, request: Request, chatroom_id: int) -> Response:
        services.chatroom_delete(user=_user(request), chatroom_id=chatroom_id)
        return Response(status=204)


class MessageHistoryView(APIView):
    @extend_schema(
        operation_id="chatroom_messages",
        summary="Page back through a chatroom's messages",
        description=(
            "Without `before`: the newest `limit` messages. Each page is ordered oldest first; "
            "`next` is the page of messages just before the first one of this page."
        ),
        parameters=[_BEFORE, _LIMIT],
        responses={
            200: s.MessagePageSerializer,
            400: _error("`before` is not a message id (`validation_error`)."),
        },
    )
    def get(self, request: Request, chatroom_id: int) -> Response:
        before_id = _before_param(request)
        limit = page_limit(request.query_params)
        page = selectors.message_history(
            user=_user(request), chatroom_id=chatroom_id, before_id=before_id, limit=limit
        )
        next_url = None
        if page.has_more:
            oldest = page.messages[0].pk
            next_url = f"{_list_url(request)}?before={oldest}&limit={limit}"
        return Response({"results": [message_payload(m) for m in page.messages], "next": next_url})


class MessageSendView(APIView):
    @extend_schema(
        operation_id="chatroom_message_send",
        summary="Send a message; the reply is generated in the background",
        description=(
            "Stores the message and a `pending` reply, counts one prompt against the daily "
            "limit and answers 202 at once; poll the reply or read its stream. A reply that "
            "ends `failed` with nothing delivered gives its prompt back; one that fails after "
            "text was streamed keeps its text and its count: a prompt is never both refunded "
            "and answered."
        ),
        parameters=[_IDEMPOTENCY_KEY, *_RATE_LIMIT_HEADERS],
        request=s.MessageSendSerializer,
        responses={
            202: s.MessageSendResponseSerializer,
            409: _error(
                "This chatroom's last reply is still pending or streaming "
                "(`reply_in_progress`; `details.reply_id` names it). A reply that no worker is "
                "left to finish (none alive, and the reply idle for "
                f"REPLY_ABANDONED_AFTER_SECONDS, {settings.REPLY_ABANDONED_AFTER_SECONDS} s, past "
                "its lease) does not block: the send fails it first "
                "(`worker_unavailable`, its prompt given back)."
            ),
            422: _error(
                "The Idempotency-Key was used for another request (`idempotency_key_mismatch`)."
            ),
            429: _error(
                f"Daily limit of {settings.BASIC_DAILY_LIMIT} prompts (BASIC_DAILY_LIMIT) "
                "reached (`daily_limit_exceeded`, details "
                "`{limit, used, resets_at}`, headers Retry-After and X-RateLimit-*)."
            ),
        },
    )
    def post(self, request: Request, chatroom_id: int) -> HttpResponse:
        serializer = s.MessageSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = _user(request)
        content = serializer.validated_data["content"]

        def send() -> idempotency.Answer:
            sent = services.message_send(user=user, chatroom_id=chatroom_id, content=content)
            headers = rate_limit_headers(sent.usage)
            headers.pop("X-RateLimit-Reset-After", None)
            headers["Location"] = reply_location(sent.reply)
            body = {
                "user_message": message_payload(sent.user_message),
                "reply": message_payload(sent.reply),
                "usage": sent.usage.as_dict(),
            }
            return idempotency.Answer(status=202, body=render_json(body), headers=headers)

        answer = idempotency.idempotent(
            user=user,
            key=_idempotency_key(request),
            fingerprint=idempotency.request_fingerprint(chatroom_id, content),
            produce=send,
        )
        response = HttpResponse(answer.body, status=answer.status, content_type="application/json")
        for name, value in answer.headers.items():
            response[name] = value
        if answer.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class ReplyRegenerateView(APIView):
    @extend_schema(
        operation_id="chatroom_message_regenerate",
        summary="A new reply to the last reply's prompt",
        description=(
            "On the chatroom's last reply, whatever its status: a new `pending` reply to the "
            "same prompt, generated and streamed like a send's reply (follow `Location`). The "
            "old reply stays readable with `superseded: true` and leaves the conversation the "
            "model sees. Counted as a prompt, with the send's daily limit and headers. "
            "Retrying a regenerate that went through is a 409 `not_last_reply`, never a second "
            "prompt."
        ),
        parameters=[*_RATE_LIMIT_HEADERS],
        request=None,
        responses={
            202: s.MessageRegenerateResponseSerializer,
            409: _error(
                "The message is not the chatroom's last reply (`not_last_reply`), or that reply "
                "is still pending or streaming (`reply_in_progress`, `details.reply_id`)."
            ),
            429: _error(
                f"Daily limit of {settings.BASIC_DAILY_LIMIT} prompts (BASIC_DAILY_LIMIT) "
                "reached (`daily_limit_exceeded`, details "
                "`{limit, used, resets_at}`, headers Retry-After and X-RateLimit-*)."
            ),
        },
    )
    def post(self, request: Request, chatroom_id: int, message_id: int) -> HttpResponse:
        regenerated = services.reply_regenerate(
            user=_user(request), chatroom_id=chatroom_id, message_id=message_id
        )
        body = {"reply": message_payload(regenerated.reply), "usage": regenerated.usage.as_dict()}
        response = HttpResponse(render_json(body), status=202, content_type="application/json")
        headers = rate_limit_headers(regenerated.usage)
        headers.pop("X-RateLimit-Reset-After", None)
        headers["Location"] = reply_location(regenerated.reply)
        for name, value in headers.items():
            response[name] = value
        return response


def reply_location(reply: Message) -> str:
    return f"/api/chatroom/{reply.chatroom_id}/message/{reply.pk}"


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise serializers.ValidationError(
            {"Idempotency-Key": [f"Must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} characters."]}
        )
    return key


class MessageDetailView(APIView):
    @extend_schema(
        operation_id="chatroom_message_retrieve",
        summary="One message (poll a reply with it)",
        responses={200: s.MessageSerializer},
    )
    def get(self, request: Request, chatroom_id: int, message_id: int) -> Response:
        message = selectors.message_get(
            user=_user(request), chatroom_id=chatroom_id, message_id=message_id
        )
        return Response(message_payload(reply_settle_if_abandoned(reply=message)))
