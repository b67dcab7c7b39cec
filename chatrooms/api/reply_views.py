"""Reply stream (SSE) and cancel endpoints (work in progress this session)."""

from django.http import HttpRequest, HttpResponse
from rest_framework.views import APIView


def reply_stream(request: HttpRequest, chatroom_id: int, message_id: int) -> HttpResponse:
    raise NotImplementedError


class ReplyCancelView(APIView):
    pass
