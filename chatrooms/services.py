"""Writes to chatrooms and messages. Cache invalidation and the reply task run after commit."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from chatrooms.cache import list_cache_invalidate_on_commit
from chatrooms.models import Chatroom, IdempotencyRecord, Message
from chatrooms.payloads import message_payload
from chatrooms.replies import reply_abandoned_settle
from chatrooms.selectors import chatroom_first_user_message, chatroom_latest_reply_status
from chatrooms.titles import title_from_message
from core.errors import ApiError, Conflict, NotFound
from usage.selectors import UsageSummary, usage_today
from usage.services import usage_consume

logger = logging.getLogger(__name__)


class Unset(enum.Enum):
    """Marks a field a partial update leaves alone (None is a value: "no name")."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


class IdempotencyKeyMismatch(ApiError):
    status_code = 422
    code = "idempotency_key_mismatch"
    message = "This Idempotency-Key was already used for a different request."


@dataclass(frozen=True)
class SendResult:
    status: int
    body: dict[str, Any]
    usage: UsageSummary
    replayed: bool


def _locked_chatroom(*, user: User, chatroom_id: int) -> Chatroom:
    chatroom = Chatroom.objects.select_for_update().filter(pk=chatroom_id, user=user).first()
    if chatroom is None:
        raise NotFound("Chatroom not found.")
    return chatroom


def chatroom_create(*, user: User, name: str | None, system_prompt: str = "") -> Chatroom:
    with transaction.atomic():
        chatroom = Chatroom.objects.create(user=user, name=name, system_prompt=system_prompt)
        list_cache_invalidate_on_commit(user_id=user.pk)
    return chatroom


def chatroom_update(
    *,
    user: User,
    chatroom_id: int,
    name: str | Literal[Unset.UNSET] | None = UNSET,
    system_prompt: str | Literal[Unset.UNSET] = UNSET,
) -> Chatroom:
    """Rename and/or change the system prompt. A `None` name asks for a generated title again."""
    with transaction.atomic():
        chatroom = _locked_chatroom(user=user, chatroom_id=chatroom_id)
        changed: list[str] = []
        if name is not UNSET:
            if name is None:
                first = chatroom_first_user_message(chatroom_id=chatroom.pk)
                # With no message yet, the title comes with the first one.
                name = title_from_message(first) if first is not None else None
            chatroom.name = name
            changed.append("name")
        if system_prompt is not UNSET:
            chatroom.system_prompt = system_prompt
            changed.append("system_prompt")
        if changed:
            chatroom.save(update_fields=[*changed, "updated_at"])
            list_cache_invalidate_on_commit(user_id=user.pk)
    return chatroom


def chatroom_delete(*, user: User, chatroom_id: int) -> None:
    """Delete a chatroom and, with it, all its messages."""
    with transaction.atomic():
        chatroom = _locked_chatroom(user=user, chatroom_id=chatroom_id)
        chatroom.delete()
        list_cache_invalidate_on_commit(user_id=user.pk)


# --- Sending a message -------------------------------------------------------------------


class _KeyTaken(Exception):
    """Another request with the same Idempotency-Key committed first."""


def message_send(
    *, user: User, chatroom_id: int, content: str, idempotency_key: str | None = None
) -> SendResult:
    """Store the user's message and a `pending` reply, count the prompt, enqueue the reply.

    With an `idempotency_key`, the first committed answer is replayed for retries (same ids,
    counted once) for IDEMPOTENCY_KEY_RETENTION_SECONDS; after that the key is forgotten and
    its reuse is a new send. Errors roll everything back, including the key, so a retry after
    an error is evaluated afresh.
    """
    request_hash = _request_hash(chatroom_id=chatroom_id, content=content)
    for _attempt in range(2):
        try:
            with transaction.atomic():
                record = None
                if idempotency_key is not None:
                    # First, so a concurrent retry blocks on the unique index until we commit.
                    record = _idempotency_claim(
                        user=user, key=idempotency_key, request_hash=request_hash
                    )
                result = _send(user=user, chatroom_id=chatroom_id, content=content)
                if record is not None:
                    record.response_status = result.status
                    record.response_body = result.body
                    record.save(update_fields=["response_status", "response_body"])
                return result
        except _KeyTaken:
            assert idempotency_key is not None
            replay = _idempotency_replay(user=user, key=idempotency_key, request_hash=request_hash)
            if replay is not None:
                return replay
            # The record vanished between the conflict and the read (pruned), or was past
            # the replay window and has just been deleted: send anew.
    raise Conflict("The request could not be completed; retry it.", code="idempotency_conflict")


def _send(*, user: User, chatroom_id: int, content: str) -> SendResult:
    now = timezone.now()
    chatroom = _locked_chatroom(user=user, chatroom_id=chatroom_id)
    latest_reply = chatroom_latest_reply_status(chatroom_id=chatroom.pk)
    if (
        latest_reply is not None
        and latest_reply[1] in Message.IN_FLIGHT
        and reply_abandoned_settle(reply_id=latest_reply[0]) is None
    ):
        raise Conflict(
            "A reply is still being generated in this chatroom; wait for it or cancel it.",
            code="reply_in_progress",
            details={"reply_id": latest_reply[0]},
        )
    usage = usage_consume(user=user, now=now)
    user_message, reply = Message.objects.bulk_create(
        [
            Message(
                chatroom=chatroom,
                role=Message.Role.USER,
                content=content,
                status=Message.Status.COMPLETED,
                created_at=now,
                completed_at=now,
            ),
            Message(
                chatroom=chatroom,
                role=Message.Role.MODEL,
                status=Message.Status.PENDING,
                created_at=now,
                usage_day=usage_today(now),
            ),
        ]
    )
    if chatroom.name is None:
        chatroom.name = title_from_message(content)
        chatroom.save(update_fields=["name", "updated_at"])
        list_cache_invalidate_on_commit(user_id=user.pk)
    transaction.on_commit(partial(_reply_enqueue, reply_id=reply.pk))
    body = {
        "user_message": message_payload(user_message),
        "reply": message_payload(reply),
        "usage": usage.as_dict(),
    }
    return SendResult(status=202, body=body, usage=usage, replayed=False)


def _reply_enqueue(*, reply_id: int) -> None:
    # Imported here: the task module imports the reply pipeline, which reads chatrooms.
    from chatrooms.tasks import reply_generate

    try:
        reply_generate.delay(reply_id)
    except Exception:
        # The reply stays `pending`; the periodic sweep enqueues it again.
        logger.exception("Could not enqueue the reply %s; the sweep will retry it", reply_id)


def _request_hash(*, chatroom_id: int, content: str) -> str:
    canonical = json.dumps([chatroom_id, content], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_retention() -> dt.timedelta:
    """How long an Idempotency-Key is replayed: IDEMPOTENCY_KEY_RETENTION_SECONDS."""
    return dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION_SECONDS)


def _idempotency_expired_before() -> dt.datetime:
    return timezone.now() - idempotency_retention()


def _idempotency_claim(*, user: User, key: str, request_hash: str) -> IdempotencyRecord:
    try:
        return IdempotencyRecord.objects.create(
            user=user, key=key, request_hash=request_hash, response_status=0, response_body={}
        )
    except IntegrityError as exc:
        raise _KeyTaken from exc


def _idempotency_replay(*, user: User, key: str, request_hash: str) -> SendResult | None:
    record = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if record is None:
        return None
    expired_before = _idempotency_expired_before()
    if record.created_at < expired_before:
        # Past the replay window the key counts as absent, even before the prune removes it:
        # delete it (a concurrent retry may have already) so the next claim succeeds.
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return None
    if record.request_hash != request_hash:
        raise IdempotencyKeyMismatch()
    body: dict[str, Any] = record.response_body
    return SendResult(
        status=record.response_status,
        body=body,
        usage=_usage_from_dict(body["usage"]),
        replayed=True,
    )


def _usage_from_dict(usage: dict[str, Any]) -> UsageSummary:
    return UsageSummary(
        limit=usage["limit"],
        used=usage["used"],
        remaining=usage["remaining"],
        resets_at=dt.datetime.fromisoformat(usage["resets_at"]),
    )


def idempotency_records_prune(*, older_than: dt.timedelta) -> int:
    """Forget Idempotency-Keys older than `older_than`; returns how many were deleted."""
    deleted, _ = IdempotencyRecord.objects.filter(
        created_at__lt=timezone.now() - older_than
    ).delete()
    return deleted
