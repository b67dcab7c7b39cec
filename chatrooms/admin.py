from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chatrooms import services
from chatrooms.cache import list_cache_invalidate_on_commit
from chatrooms.errors import MessageNotFound, ReplyInProgress, ReplyNotRetryable
from chatrooms.models import Chatroom, IdempotencyRecord, Message

_MESSAGE_FIELDS = (
    "role",
    "status",
    "content",
    "error_code",
    "error_message",
    "model_name",
    "prompt_tokens",
    "output_tokens",
    "tokens_estimated",
    "superseded",
    "attempts",
    "created_at",
    "completed_at",
)


class MessageInline(admin.TabularInline):
    model = Message
    fields = _MESSAGE_FIELDS
    readonly_fields = _MESSAGE_FIELDS
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Chatroom)
class ChatroomAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "user", "created_at", "updated_at")
    list_select_related = ("user",)
    list_filter = ("created_at",)
    search_fields = ("=id", "name", "user__phone")
    raw_id_fields = ("user",)
    readonly_fields = ("created_at", "updated_at")
    date_hierarchy = "created_at"
    inlines = (MessageInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Chatroom | None = None) -> Any:
        # The owner is fixed once created: moving chatrooms between users is not a feature.
        return (*self.readonly_fields, "user") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Chatroom, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        list_cache_invalidate_on_commit(user_id=obj.user_id)

    def delete_model(self, request: HttpRequest, obj: Chatroom) -> None:
        services.chatroom_delete(user=obj.user, chatroom_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Chatroom]) -> None:
        user_ids = set(queryset.values_list("user_id", flat=True))
        super().delete_queryset(request, queryset)
        for user_id in user_ids:
            list_cache_invalidate_on_commit(user_id=user_id)


class ModelNameFilter(admin.SimpleListFilter):
    """The models of the latest replies. Django's own filter on a field reads the distinct
    values of the whole table on every page load; this reads the newest rows' only."""

    title = "model"
    parameter_name = "model_name"
    RECENT_MESSAGES = 10_000

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = Message.objects.order_by("-id").values("pk")[: self.RECENT_MESSAGES]
        names = set(
            Message.objects.filter(pk__in=recent)
            .exclude(model_name="")
            .values_list("model_name", flat=True)
            .distinct()
        )
        if self.value():
            names.add(str(self.value()))  # a filter chosen earlier stays on the list
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(model_name=self.value()) if self.value() else queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "chatroom", "role", "status", "model_name", "created_at")
    list_select_related = ("chatroom",)
    list_filter = ("status", ModelNameFilter, "role", "created_at")
    search_fields = ("=id", "content", "=chatroom__id", "chatroom__user__phone")
    raw_id_fields = ("chatroom",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ("retry_reply",)

    # Messages are what the users and the model said: an operator reads them, never writes
    # them (a reply's state belongs to the pipeline; a hand edit would break its fencing).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # The model's change right, which the pages above never grant (read-only).
        return request.user.has_perm("chatrooms.change_message")

    @admin.action(description="Retry the failed reply (generate it again)", permissions=["retry"])
    def retry_reply(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        retried = []
        for reply_id in queryset.values_list("pk", flat=True):
            try:
                services.reply_retry(reply_id=reply_id)
            except ReplyInProgress as busy:
                self.message_user(
                    request,
                    f"Reply {reply_id} not retried: reply {busy.details['reply_id']} of its "
                    "chatroom is still in flight.",
                    messages.ERROR,
                )
            except (ReplyNotRetryable, MessageNotFound):
                self.message_user(
                    request,
                    f"Message {reply_id} not retried: only a failed reply that is its "
                    "chatroom's latest can be.",
                    messages.ERROR,
                )
            else:
                retried.append(reply_id)
        if retried:
            self.message_user(request, f"Retried (pending, enqueued): {retried}.")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "user", "response_status", "created_at")
    list_select_related = ("user",)
    search_fields = ("=key", "user__phone")
    raw_id_fields = ("user",)
    readonly_fields = ("user", "key", "request_hash", "response_status", "response_body")
    date_hierarchy = "created_at"
