"""Cursors of the chatroom list: an id bound, signed for the user it was handed to.

A cursor is `c2.<id in hex>.<signature>`, the signature an HMAC keyed from SECRET_KEY over
the user and the id. Only values this server handed out pass: a forged, edited, truncated or
other user's cursor is refused before it reaches the database or the list cache, so a client
cannot mint new pages (and cache entries) by inventing ids.
"""

from __future__ import annotations

import base64

from django.utils.crypto import constant_time_compare, salted_hmac

_PREFIX = "c2."
_SALT = "chatrooms.list-cursor"
_SIGNATURE_BYTES = 16  # 128 bits: more than enough for an HMAC that is never exposed whole
_SIGNATURE_CHARS = 22  # base64url of 16 bytes, unpadded
_MAX_ID_DIGITS = 16  # a positive bigint in hex


def _signature(*, user_id: int, before_id: int) -> str:
    digest = salted_hmac(_SALT, f"{user_id}:{before_id}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest[:_SIGNATURE_BYTES]).rstrip(b"=").decode()


def list_cursor_encode(*, user_id: int, before_id: int) -> str:
    return f"{_PREFIX}{before_id:x}.{_signature(user_id=user_id, before_id=before_id)}"


def list_cursor_decode(*, user_id: int, cursor: str) -> int | None:
    """The id bound of a cursor this server handed to this user, or None for any other."""
    if not cursor.startswith(_PREFIX):
        return None
    digits, _, signature = cursor[len(_PREFIX) :].partition(".")
    if not digits or len(digits) > _MAX_ID_DIGITS or len(signature) != _SIGNATURE_CHARS:
        return None
    try:
        before_id = int(digits, 16)
    except ValueError:
        return None
    # Only the spelling handed out: int() would also take "0x1f", " 1f" or "01f".
    if before_id <= 0 or digits != f"{before_id:x}":
        return None
    expected = _signature(user_id=user_id, before_id=before_id)
    return before_id if constant_time_compare(signature, expected) else None
