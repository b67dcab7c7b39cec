"""Chatroom and message endpoints (work in progress this session)."""

from rest_framework.views import APIView


class ChatroomListCreateView(APIView):
    pass


class ChatroomDetailView(APIView):
    pass


class MessageHistoryView(APIView):
    pass


class MessageSendView(APIView):
    pass


class MessageDetailView(APIView):
    pass
