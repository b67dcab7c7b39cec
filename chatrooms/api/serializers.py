"""Request validation and, for the OpenAPI schema, the shapes of the responses.

Responses themselves are rendered by `chatrooms.payloads` (the cache stores those bytes);
the output serializers here only describe them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from chatrooms.models import (
    CHATROOM_NAME_MAX_CHARS,
    CHATROOM_SYSTEM_PROMPT_MAX_CHARS,
    Message,
)
from chatrooms.selectors import DETAIL_MESSAGES
from core.fields import StrictCharField

# --- Input -----------------------------------------------------------------------------


class ChatroomWriteSerializer(serializers.Serializer):
    name = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=CHATROOM_NAME_MAX_CHARS,
        help_text=(
            f"Up to {CHATROOM_NAME_MAX_CHARS} characters, trimmed. `null` or blank: a title is "
            "generated from the first message (on PATCH, from the existing first message)."
        ),
    )
    system_prompt = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=CHATROOM_SYSTEM_PROMPT_MAX_CHARS,
        help_text=(
            f"Instructions the model sees before the conversation; up to "
            f"{CHATROOM_SYSTEM_PROMPT_MAX_CHARS} characters, trimmed. Empty: none."
        ),
    )

    def validate_name(self, value: str | None) -> str | None:
        return value or None


class MessageSendSerializer(serializers.Serializer):
    content = StrictCharField(
        max_length=settings.MESSAGE_MAX_CHARS,
        help_text=(
            f"The prompt: 1 to MESSAGE_MAX_CHARS ({settings.MESSAGE_MAX_CHARS}) characters "
            "after trimming surrounding whitespace."
        ),
    )

    def validate_content(self, value: str) -> str:
        # Checked here too so that a MESSAGE_MAX_CHARS changed at runtime (tests) applies.
        if len(value) > settings.MESSAGE_MAX_CHARS:
            raise serializers.ValidationError(
                f"Ensure this field has no more than {settings.MESSAGE_MAX_CHARS} characters."
            )
        return value


# --- Output (schema only) ----------------------------------------------------------------


class ChatroomSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(
        allow_null=True, help_text="`null` until named or titled from the first message."
    )
    system_prompt = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class MessageErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class TokenUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(
        allow_null=True, help_text="The conversation sent to the model."
    )
    output_tokens = serializers.IntegerField(allow_null=True, help_text="The reply.")
    total_tokens = serializers.IntegerField()
    estimated = serializers.BooleanField(
        help_text="`true` when the model reported none and these are our estimate (about "
        "four characters a token; the offline development model)."
    )


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = serializers.CharField(
        help_text="The text so far; final once `status` is no longer pending or streaming."
    )
    status = serializers.ChoiceField(choices=Message.Status.choices)
    error = MessageErrorSerializer(
        allow_null=True, help_text="Why a reply failed or was blocked; otherwise `null`."
    )
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    model = serializers.CharField(
        allow_null=True, help_text="The model that wrote a reply; `null` for a user's message."
    )
    usage = TokenUsageSerializer(
        allow_null=True,
        help_text="What a completed reply cost, as the model reported it; `null` for a user's "
        "message, a reply not completed, or a model that reported nothing.",
    )
    superseded = serializers.BooleanField(
        help_text="A reply regenerated since (`POST …/regenerate`): still readable, no longer "
        "part of the conversation the model sees."
    )


class ChatroomDetailSerializer(ChatroomSerializer):
    messages = MessageSerializer(
        many=True, help_text=f"The newest {DETAIL_MESSAGES} messages, oldest first."
    )
    has_more_messages = serializers.BooleanField(
        help_text="Older messages exist: page them with `/messages?before=<first id>`."
    )


class SearchResultSerializer(serializers.Serializer):
    chatroom_id = serializers.IntegerField()
    chatroom_name = serializers.CharField(allow_null=True)
    message = MessageSerializer(
        allow_null=True, help_text="The matched message; `null` when the chatroom's name matched."
    )
    snippet = serializers.CharField(
        help_text="The matched text around the words found: HTML-escaped, matches in "
        "`<mark>…</mark>`."
    )
    rank = serializers.FloatField(help_text="PostgreSQL's ts_rank: higher is a better match.")


class SearchPageSerializer(serializers.Serializer):
    results = SearchResultSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or `null`.")


class ChatroomPageSerializer(serializers.Serializer):
    results = ChatroomSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or `null`.")


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, help_text="Oldest first within the page.")
    next = serializers.URLField(
        allow_null=True, help_text="The page of messages just before these, or `null`."
    )


class UsageSerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="`null` for Pro.")
    used = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True, help_text="`null` for Pro.")
    resets_at = serializers.DateTimeField()
    tokens_today = serializers.IntegerField(
        help_text="Tokens in and out of the replies completed today."
    )


class MessageRegenerateResponseSerializer(serializers.Serializer):
    reply = MessageSerializer(help_text="The new reply, `pending`.")
    usage = UsageSerializer(help_text="Today's count, including this prompt.")


class MessageSendResponseSerializer(serializers.Serializer):
    user_message = MessageSerializer()
    reply = MessageSerializer(help_text="`pending`: poll it or read its stream.")
    usage = UsageSerializer(help_text="Today's count, including this prompt.")


def chatroom_changes(data: dict[str, Any]) -> dict[str, Any]:
    """The validated fields a client actually sent, as keyword arguments for the services."""
    return {key: data[key] for key in ("name", "system_prompt") if key in data}
