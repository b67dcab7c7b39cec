"""GET /api/chatroom/{id}/export: the chatroom as a JSON or Markdown download."""

from __future__ import annotations

from typing import cast

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import User
from chatrooms.export import (
    EXPORT_FORMATS,
    chatroom_export_filename,
    chatroom_export_json,
    chatroom_export_markdown,
    render_export_json,
)
from chatrooms.selectors import chatroom_get


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, default="json")


class ChatroomExportView(APIView):
    slow_methods = frozenset({"GET"})  # the whole chatroom, built at once (gemini_clone.asgi)

    @extend_schema(
        operation_id="chatroom_export",
        summary="Download a chatroom",
        description=(
            "The chatroom and all its messages, oldest first, as an attachment named like "
            "`chatroom-12-travel-plans-2026-12-04.json`. `json`: `{chatroom, messages, "
            "exported_at}`, in the shapes of the other endpoints. `markdown`: a transcript, "
            "one heading per message (who, when, and whether it was regenerated since or did "
            "not complete), the messages as written."
        ),
        parameters=[
            OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), default="json"),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT),
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR),
            400: OpenApiResponse(
                description="`validation_error`: `format` is not json or markdown."
            ),
        },
    )
    def get(self, request: Request, chatroom_id: int) -> HttpResponse:
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        export_format: str = query.validated_data["format"]
        chatroom = chatroom_get(user=cast(User, request.user), chatroom_id=chatroom_id)
        if export_format == "markdown":
            response = HttpResponse(
                chatroom_export_markdown(chatroom), content_type="text/markdown; charset=utf-8"
            )
        else:
            response = HttpResponse(
                render_export_json(chatroom_export_json(chatroom)),
                content_type="application/json",
            )
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=chatroom_export_filename(chatroom, export_format)
        )
        return response
