"""GET /api/search: the user's own messages and chatroom names, best match first."""

from __future__ import annotations

from typing import cast
from urllib.parse import urlencode

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from chatrooms.api import serializers as s
from chatrooms.errors import CursorInvalid
from chatrooms.payloads import message_payload
from chatrooms.search import QUERY_MAX_CHARS, SearchPage, search, search_cursor_decode
from core.pagination import page_limit
from core.schema import ErrorResponseSerializer


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        min_length=1,
        max_length=QUERY_MAX_CHARS,
        help_text=f"What to look for, 1 to {QUERY_MAX_CHARS} characters (trimmed): words "
        '(all must match), "a quoted phrase", `or` between alternatives, `-word` to exclude.',
    )


class SearchView(APIView):
    @extend_schema(
        operation_id="search",
        summary="Search my messages and chatroom names",
        description=(
            "PostgreSQL full-text search over the user's own completed messages (a regenerated "
            "reply's old version left out) and chatroom names, best first. Words match as "
            "written, in any language, case aside (no stemming: `run` does not find "
            "`running`). Each result names its chatroom; `message` is the matched message, "
            "or `null` when the chatroom's name matched. `snippet` is HTML-escaped text with "
            "the matched words in `<mark>…</mark>`. Paged by `next`."
        ),
        parameters=[
            SearchQuerySerializer,
            OpenApiParameter(
                "limit",
                int,
                description=f"Page size; default {settings.PAGE_SIZE_DEFAULT}, at most "
                f"{settings.PAGE_SIZE_MAX}.",
            ),
            OpenApiParameter("cursor", str, description="Opaque; copy it from `next`."),
        ],
        responses={
            200: s.SearchPageSerializer,
            400: OpenApiResponse(
                ErrorResponseSerializer,
                description=f"`validation_error`: `q` missing, blank or over {QUERY_MAX_CHARS} "
                "characters; `invalid_cursor`: a cursor not handed out to this user for this "
                "query.",
            ),
            503: OpenApiResponse(
                ErrorResponseSerializer,
                description="`search_timeout`: the search ran past SEARCH_TIMEOUT_MS (a word "
                "found in most of a long history); try more specific words.",
            ),
        },
    )
    def get(self, request: Request) -> Response:
        query = SearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q: str = query.validated_data["q"]
        user = cast(User, request.user)
        limit = page_limit(request.query_params)
        after = None
        if cursor := request.query_params.get("cursor"):
            after = search_cursor_decode(user_id=user.pk, q=q, cursor=cursor)
            if after is None:
                raise CursorInvalid()
        page = search(user_id=user.pk, q=q, limit=limit, after=after)
        return Response({"results": _results(page), "next": _next_url(request, q, limit, page)})


def _results(page: SearchPage) -> list[dict[str, object]]:
    return [
        {
            "chatroom_id": hit.chatroom_id,
            "chatroom_name": hit.chatroom_name,
            "message": (
                message_payload(page.messages[hit.message_id])
                if hit.message_id in page.messages
                else None
            ),
            "snippet": hit.snippet,
            "rank": hit.rank,
        }
        for hit in page.hits
    ]


def _next_url(request: Request, q: str, limit: int, page: SearchPage) -> str | None:
    if page.next_cursor is None:
        return None
    query = urlencode({"q": q, "limit": limit, "cursor": page.next_cursor})
    return request.build_absolute_uri(f"{request.path}?{query}")
