"""Plain-dict renderings of chatrooms and messages, shared by the API, the cache and the stream."""

from __future__ import annotations

import datetime as dt
from typing import Any

from chatrooms.models import Chatroom, Message


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def chatroom_payload(chatroom: Chatroom) -> dict[str, Any]:
    return {
        "id": chatroom.pk,
        "name": chatroom.name,
        "system_prompt": chatroom.system_prompt,
        "created_at": iso(chatroom.created_at),
        "updated_at": iso(chatroom.updated_at),
    }


def message_payload(message: Message) -> dict[str, Any]:
    error = None
    if message.error_code:
        error = {"code": message.error_code, "message": message.error_message}
    return {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": error,
        "created_at": iso(message.created_at),
        "completed_at": iso(message.completed_at),
        "model": message.model_name or None,
        "usage": token_usage_payload(message),
        "superseded": message.superseded,
    }


def token_usage_payload(message: Message) -> dict[str, Any] | None:
    if message.prompt_tokens is None and message.output_tokens is None:
        return None
    return {
        "prompt_tokens": message.prompt_tokens,
        "output_tokens": message.output_tokens,
        "total_tokens": (message.prompt_tokens or 0) + (message.output_tokens or 0),
        "estimated": message.tokens_estimated,
    }
