from django.urls import URLPattern, URLResolver, path

from chatrooms.api import export_views, reply_views, search_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("chatroom", views.ChatroomListCreateView.as_view(), name="chatroom-list"),
    path("search", search_views.SearchView.as_view(), name="search"),
    path("chatroom/<int:chatroom_id>", views.ChatroomDetailView.as_view(), name="chatroom-detail"),
    path(
        "chatroom/<int:chatroom_id>/export",
        export_views.ChatroomExportView.as_view(),
        name="chatroom-export",
    ),
    path(
        "chatroom/<int:chatroom_id>/messages",
        views.MessageHistoryView.as_view(),
        name="chatroom-messages",
    ),
    path(
        "chatroom/<int:chatroom_id>/message",
        views.MessageSendView.as_view(),
        name="chatroom-message-send",
    ),
    path(
        "chatroom/<int:chatroom_id>/message/<int:message_id>",
        views.MessageDetailView.as_view(),
        name="chatroom-message-detail",
    ),
    path(
        "chatroom/<int:chatroom_id>/message/<int:message_id>/stream",
        reply_views.reply_stream,
        name="chatroom-message-stream",
    ),
    path(
        "chatroom/<int:chatroom_id>/message/<int:message_id>/regenerate",
        views.ReplyRegenerateView.as_view(),
        name="chatroom-message-regenerate",
    ),
    path(
        "chatroom/<int:chatroom_id>/message/<int:message_id>/cancel",
        reply_views.ReplyCancelView.as_view(),
        name="chatroom-message-cancel",
    ),
]
