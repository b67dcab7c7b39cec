"""Titles for unnamed chatrooms, made from the first message the user sends."""

from __future__ import annotations

TITLE_MAX_CHARS = 60
# A cut on a word boundary is preferred unless it would throw away most of the line.
_MIN_WORD_CUT = TITLE_MAX_CHARS // 2
_ELLIPSIS = "…"
_FALLBACK = "New chat"


def title_from_message(content: str) -> str:
    """The first non-blank line, whitespace collapsed, cut to TITLE_MAX_CHARS on a word boundary."""
    first_line = next((line for line in content.splitlines() if line.strip()), "")
    text = " ".join(first_line.split())
    if not text:
        return _FALLBACK
    if len(text) <= TITLE_MAX_CHARS:
        return text
    room = TITLE_MAX_CHARS - len(_ELLIPSIS)
    cut = text[: room + 1].rfind(" ")
    head = text[:cut] if cut >= _MIN_WORD_CUT else text[:room]
    return head.rstrip(" ,.;:-") + _ELLIPSIS
