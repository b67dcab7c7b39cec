"""A chatroom as a download: JSON (the API's own shapes) or a Markdown transcript."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from django.utils import timezone
from django.utils.text import slugify

from chatrooms.models import Chatroom, Message
from chatrooms.payloads import chatroom_payload, iso, message_payload

EXPORT_FORMATS = ("json", "markdown")
_EXTENSIONS = {"json": "json", "markdown": "md"}
_ROLE_TITLES = {Message.Role.USER: "You", Message.Role.MODEL: "Gemini"}


def chatroom_messages(chatroom: Chatroom) -> Iterator[Message]:
    """Oldest first, read in chunks: a long chatroom never sits in memory as model objects."""
    return chatroom.messages.order_by("id").iterator(chunk_size=500)


def chatroom_export_json(chatroom: Chatroom) -> dict[str, Any]:
    return {
        "chatroom": chatroom_payload(chatroom),
        "messages": [message_payload(message) for message in chatroom_messages(chatroom)],
        "exported_at": iso(timezone.now()),
    }


def chatroom_export_markdown(chatroom: Chatroom) -> str:
    """A transcript to read: each message under a heading naming who wrote it and when.
    Messages are kept as written (they are often Markdown themselves)."""
    lines = [f"# {chatroom.name or 'Untitled chatroom'}", ""]
    if chatroom.system_prompt:
        lines += [f"> System prompt: {chatroom.system_prompt}", ""]
    for message in chatroom_messages(chatroom):
        heading = f"## {_ROLE_TITLES[Message.Role(message.role)]} · {_when(message.created_at)}"
        notes = []
        if message.superseded:
            notes.append("regenerated since")
        if message.status != Message.Status.COMPLETED:
            notes.append(message.status)
        if notes:
            heading += f" ({', '.join(notes)})"
        lines += [heading, "", message.content or "_(no text)_", ""]
    lines.append(f"_Exported {_when(timezone.now())}._")
    return "\n".join(lines) + "\n"


def chatroom_export_filename(chatroom: Chatroom, export_format: str) -> str:
    """`chatroom-12-travel-plans-2026-12-04.md`: ASCII, whatever the chatroom's name."""
    name = slugify(chatroom.name or "")[:60].strip("-")
    parts = [
        "chatroom",
        str(chatroom.pk),
        *([name] if name else []),
        timezone.now().date().isoformat(),
    ]
    return f"{'-'.join(parts)}.{_EXTENSIONS[export_format]}"


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_export_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, indent=2).encode()
