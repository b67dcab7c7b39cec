"""The errors of the chatroom and message endpoints, each with the contract's stable code.

Named `<Thing><WhatWentWrong>`, like the other apps' catalogues."""

from __future__ import annotations

from core.errors import ApiError


class ChatroomNotFound(ApiError):
    status_code = 404
    code = "not_found"
    message = "Chatroom not found."


class MessageNotFound(ApiError):
    status_code = 404
    code = "not_found"
    message = "Message not found."


class ChatroomLimitReached(ApiError):
    status_code = 409
    code = "chatroom_limit_reached"
    message = "This account has as many chatrooms as it may have; delete one to create another."

    def __init__(self, *, limit: int) -> None:
        super().__init__(details={"limit": limit})


class CursorInvalid(ApiError):
    status_code = 400
    code = "invalid_cursor"
    message = "This cursor was not handed out by this server; copy it from `next`."


class ReplyInProgress(ApiError):
    status_code = 409
    code = "reply_in_progress"
    message = "A reply is still being generated in this chatroom; wait for it or cancel it."

    def __init__(self, *, reply_id: int) -> None:
        super().__init__(details={"reply_id": reply_id})


class ReplyNotCancelable(ApiError):
    status_code = 409
    code = "not_cancelable"
    message = "Only a model reply can be canceled."


class NotLastReply(ApiError):
    status_code = 409
    code = "not_last_reply"
    message = "Only the chatroom's last reply can be regenerated."


class ReplyNotRetryable(ApiError):
    status_code = 409
    code = "not_retryable"
    message = "Only a failed reply that is its chatroom's latest can be retried."


class IdempotencyKeyMismatch(ApiError):
    status_code = 422
    code = "idempotency_key_mismatch"
    message = "This Idempotency-Key was already used for a different request."


class IdempotencyKeyBusy(ApiError):
    """The key's first request neither finished nor can be replayed (it vanished meanwhile)."""

    status_code = 409
    code = "idempotency_conflict"
    message = "The request could not be completed; retry it."


class StreamsTooMany(ApiError):
    status_code = 429
    code = "too_many_streams"
    message = "Too many reply streams are open; close one, or poll the message instead."

    def __init__(self, *, limit: int, retry_after: int) -> None:
        super().__init__(details={"limit": limit}, headers={"Retry-After": str(retry_after)})


class SearchTimedOut(ApiError):
    status_code = 503
    code = "search_timeout"
    message = "The search took too long; try more specific words."

    def __init__(self, *, timeout_ms: int) -> None:
        super().__init__(details={"timeout_ms": timeout_ms})
