"""Writes to chatrooms and messages from the API: create, rename, delete, send, regenerate,
cancel.

Cache invalidation, the reply's enqueueing and stream announcements run after commit. The
worker's side of a reply's life is `chatrooms.replies`."""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass
from functools import partial
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.errors import AccountGone
from accounts.models import User
from billing.selectors import user_is_pro_sql
from chatrooms import metrics, streaming
from chatrooms.cache import list_cache_delete, list_cache_invalidate_on_commit
from chatrooms.errors import (
    ChatroomLimitReached,
    ChatroomNotFound,
    MessageNotFound,
    NotLastReply,
    ReplyInProgress,
    ReplyNotCancelable,
    ReplyNotRetryable,
)
from chatrooms.models import Chatroom, IdempotencyRecord, Message
from chatrooms.replies import (
    lease_live,
    reply_abandoned_settle,
    reply_cancel_settle,
    reply_done_announce,
)
from chatrooms.selectors import (
    LATEST_REPLY_IN_FLIGHT_SQL,
    chatroom_first_user_message,
    chatroom_latest_reply_status,
    user_messages,
)
from chatrooms.stream_slots import slots_key
from chatrooms.tasks import reply_enqueue_on_commit
from chatrooms.titles import title_from_message
from core.sql import insert_new
from usage.selectors import UsageSummary, usage_today
from usage.services import usage_count_prompt

logger = logging.getLogger(__name__)


class Unset(enum.Enum):
    """Marks a field a partial update leaves alone (None is a value: "no name")."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


def _locked_chatroom(*, user: User, chatroom_id: int) -> Chatroom:
    chatroom = Chatroom.objects.select_for_update().filter(pk=chatroom_id, user=user).first()
    if chatroom is None:
        raise ChatroomNotFound()
    return chatroom


def _chatrooms_counted_under_lock(*, user_id: int) -> int:
    """The user's chatrooms, counted after taking the user's row; held until the transaction
    ends, so creates of one user queue and two at the same instant cannot both pass the cap
    (a conditional INSERT alone would: each counts without the other's row).

    NO KEY UPDATE neither waits for nor holds up inserts that merely reference the user, such
    as a send counting its prompt. The count is a statement of its own, so its snapshot is
    taken after the lock: it sees the row of the create it waited for. Plain SQL: the ORM's
    two queries cost 550 µs of CPU here, these 100 µs."""
    users = connection.ops.quote_name(User._meta.db_table)
    chatrooms = connection.ops.quote_name(Chatroom._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {users} WHERE id = %s FOR NO KEY UPDATE", [user_id])  # noqa: S608
        if cursor.fetchone() is None:
            raise AccountGone()  # deleted while this request waited for the lock
        cursor.execute(f"SELECT count(*) FROM {chatrooms} WHERE user_id = %s", [user_id])  # noqa: S608
        return int(cursor.fetchone()[0])


def chatroom_create(*, user: User, name: str | None, system_prompt: str = "") -> Chatroom:
    """Refused with ChatroomLimitReached once the user has MAX_CHATROOMS_PER_USER chatrooms."""
    limit = settings.MAX_CHATROOMS_PER_USER
    with transaction.atomic():
        if _chatrooms_counted_under_lock(user_id=user.pk) >= limit:
            raise ChatroomLimitReached(limit=limit)
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


@dataclass(frozen=True)
class Sent:
    user_message: Message
    reply: Message
    usage: UsageSummary


_LOCK_FOR_PROMPT_SQL = f"""
    SELECT chatroom.name, {{is_pro}}
    FROM {Chatroom._meta.db_table} chatroom
    WHERE chatroom.id = %(chatroom_id)s AND chatroom.user_id = %(user_id)s
    FOR UPDATE OF chatroom
"""  # noqa: S608 (the table names and condition are ours, the values are parameters)


@dataclass(frozen=True)
class _LockedForPrompt:
    name: str | None
    owner_is_pro: bool


def _chatroom_locked_for_prompt(*, user: User, chatroom_id: int) -> _LockedForPrompt:
    """Lock the user's chatroom (ChatroomNotFound if it is not theirs), and read its name and
    the user's tier in the same round trip. `_locked_chatroom` in plain SQL, for the send
    path (see core/sql.py)."""
    is_pro, pro_params = user_is_pro_sql(user_id=user.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            _LOCK_FOR_PROMPT_SQL.format(is_pro=is_pro),
            {"chatroom_id": chatroom_id, "user_id": user.pk, **pro_params},
        )
        row = cursor.fetchone()
    if row is None:
        raise ChatroomNotFound()
    name, is_pro_now = row
    return _LockedForPrompt(name=name, owner_is_pro=bool(is_pro_now))


def _pending_reply(*, chatroom_id: int, now: dt.datetime) -> Message:
    """A new reply waiting for its worker, its prompt counted on `now`'s day."""
    return Message(
        chatroom_id=chatroom_id,
        role=Message.Role.MODEL,
        status=Message.Status.PENDING,
        created_at=now,
        usage_day=usage_today(now),
    )


def message_send(*, user: User, chatroom_id: int, content: str) -> Sent:
    """Store the user's message and a `pending` reply, count the prompt, and enqueue the
    reply once this commits. Refused with ReplyInProgress while the chatroom's last reply is
    in flight (unless no worker is left to finish it: then it fails, refunded, first)."""
    now = timezone.now()
    user_message = Message(
        chatroom_id=chatroom_id,
        role=Message.Role.USER,
        content=content,
        status=Message.Status.COMPLETED,
        created_at=now,
        completed_at=now,
    )
    reply = _pending_reply(chatroom_id=chatroom_id, now=now)
    with transaction.atomic():
        locked = _chatroom_locked_for_prompt(user=user, chatroom_id=chatroom_id)
        # One statement checks the last reply and inserts. It comes after the lock's, so its
        # snapshot has any reply that finished while the lock was awaited (read committed).
        if not insert_new(
            [user_message, reply],
            unless_exists=LATEST_REPLY_IN_FLIGHT_SQL,
            unless_params=[chatroom_id, Message.Role.MODEL.value],
        ):
            # It may have finished since; if not, it blocks unless it is abandoned.
            _refuse_while_in_flight(chatroom_latest_reply_status(chatroom_id=chatroom_id))
            insert_new([user_message, reply])
        if locked.name is None:
            Chatroom.objects.filter(pk=chatroom_id).update(
                name=title_from_message(content), updated_at=now
            )
            list_cache_invalidate_on_commit(user_id=user.pk)
        # Last: a refusal (DailyLimitExceeded) rolls back what the send stored.
        usage = usage_count_prompt(
            user=user, is_pro=locked.owner_is_pro, chatroom_id=chatroom_id, now=now
        )
        reply_enqueue_on_commit(reply_id=reply.pk)
    return Sent(user_message=user_message, reply=reply, usage=usage)


def _refuse_while_in_flight(latest_reply: tuple[int, str] | None) -> None:
    """ReplyInProgress while the chatroom's newest reply (id, status) is in flight, unless no
    worker is left to finish it: then it fails, refunded, and the caller goes on. Under the
    chatroom's lock."""
    if (
        latest_reply is not None
        and latest_reply[1] in Message.IN_FLIGHT
        and reply_abandoned_settle(reply_id=latest_reply[0]) is None
    ):
        raise ReplyInProgress(reply_id=latest_reply[0])


# --- Regenerating the last reply -------------------------------------------------------------


@dataclass(frozen=True)
class Regenerated:
    reply: Message
    usage: UsageSummary


_SUPERSEDE_SQL = f"""
    UPDATE {Message._meta.db_table} SET superseded = true, updated_at = now()
    WHERE id = %s AND chatroom_id = %s AND role = %s
"""  # noqa: S608 (the table name is ours, the values are parameters)


def reply_regenerate(*, user: User, chatroom_id: int, message_id: int) -> Regenerated:
    """A new reply to the prompt of the chatroom's last reply, `message_id`, counted and
    enqueued like a send's (the same lock, in-flight rule and daily limit). The old reply
    stays, `superseded`: readable, no longer in the history the model sees.

    NotLastReply unless `message_id` is the chatroom's newest reply. A client retrying a
    regenerate that went through gets that too (its reply is no longer the last): a retry
    never counts a second prompt."""
    now = timezone.now()
    with transaction.atomic():
        locked = _chatroom_locked_for_prompt(user=user, chatroom_id=chatroom_id)
        latest_reply = chatroom_latest_reply_status(chatroom_id=chatroom_id)
        if latest_reply is None or latest_reply[0] != message_id:
            if not user_messages(user=user, chatroom_id=chatroom_id).filter(pk=message_id).exists():
                raise MessageNotFound()
            raise NotLastReply()
        _refuse_while_in_flight(latest_reply)
        with connection.cursor() as cursor:
            cursor.execute(_SUPERSEDE_SQL, [message_id, chatroom_id, Message.Role.MODEL.value])
        reply = _pending_reply(chatroom_id=chatroom_id, now=now)
        insert_new([reply])
        # Last: a refusal (DailyLimitExceeded) rolls back what this stored.
        usage = usage_count_prompt(
            user=user, is_pro=locked.owner_is_pro, chatroom_id=chatroom_id, now=now
        )
        reply_enqueue_on_commit(reply_id=reply.pk)
    return Regenerated(reply=reply, usage=usage)


# --- Deleting a user's chatrooms (account deletion) ----------------------------------------

_LOCK_USER_CHATROOMS_SQL = f"""
    SELECT id FROM {Chatroom._meta.db_table} WHERE user_id = %s ORDER BY id FOR UPDATE
"""  # noqa: S608 (the table name is ours, the values are parameters)
_DELETE_USER_MESSAGES_SQL = f"""
    DELETE FROM {Message._meta.db_table}
    WHERE chatroom_id IN (SELECT id FROM {Chatroom._meta.db_table} WHERE user_id = %s)
    RETURNING id, role
"""  # noqa: S608
_DELETE_USER_CHATROOMS_SQL = f"""
    DELETE FROM {Chatroom._meta.db_table} WHERE user_id = %s
"""  # noqa: S608


def chatrooms_of_user_delete(*, user_id: int) -> None:
    """Delete every chatroom of the user with its messages and the user's idempotency
    records, in the caller's transaction; once it commits, their Redis data too (the cached
    list, reply streams, open-stream slots).

    ReplyInProgress while one of the user's replies is being generated (see
    `user_replies_in_flight_refuse`). The chatrooms are locked first, as a send locks its
    chatroom, so no message slips in."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_USER_CHATROOMS_SQL, [user_id])
        user_replies_in_flight_refuse(user_id=user_id)
        # Plain SQL: the ORM would load every message to cascade one by one.
        cursor.execute(_DELETE_USER_MESSAGES_SQL, [user_id])
        reply_ids = [pk for pk, role in cursor.fetchall() if role == Message.Role.MODEL]
        cursor.execute(_DELETE_USER_CHATROOMS_SQL, [user_id])
    IdempotencyRecord.objects.filter(user_id=user_id).delete()
    transaction.on_commit(partial(_user_redis_forget, user_id=user_id, reply_ids=reply_ids))


def user_replies_in_flight_refuse(*, user_id: int) -> None:
    """ReplyInProgress while one of the user's replies is being generated: its worker would
    go on writing to its stream. A reply no worker is left to finish is failed instead, and
    does not refuse."""
    in_flight = Message.objects.filter(
        chatroom__user_id=user_id, role=Message.Role.MODEL, status__in=Message.IN_FLIGHT
    ).values_list("pk", flat=True)
    for reply_id in in_flight:
        if reply_abandoned_settle(reply_id=reply_id) is None:
            raise ReplyInProgress(reply_id=reply_id)


def _user_redis_forget(*, user_id: int, reply_ids: list[int]) -> None:
    list_cache_delete(user_id=user_id)
    try:
        streaming.streams_forget(reply_ids=reply_ids)
        streaming.redis_client().delete(slots_key(user_id))
    except RedisError:
        # Streams expire after REPLY_STREAM_TTL_SECONDS, slots with their leases.
        logger.warning("Could not delete the streams of user %s", user_id, exc_info=True)


# --- Canceling a reply ---------------------------------------------------------------------


def reply_cancel(*, user: User, chatroom_id: int, message_id: int) -> Message:
    """Cancel a reply that is pending or streaming; a finished one is returned unchanged.

    A streaming reply keeps the text generated so far, and the reply returned has it: the
    text its worker published before the cancel, which the stream's `done` and a later GET
    show too (`_canceled_text_store`). A canceled prompt is not given back.
    """
    with transaction.atomic():
        reply = (
            user_messages(user=user, chatroom_id=chatroom_id)
            .select_for_update(of=("self",))
            .annotate(lease_live=lease_live())
            .filter(pk=message_id)
            .first()
        )
        if reply is None:
            raise MessageNotFound()
        if reply.role != Message.Role.MODEL:
            raise ReplyNotCancelable()
        if reply.status not in Message.IN_FLIGHT:
            return reply
        # A pending reply has no worker (nor has one whose lease ran out): it ends here. A live
        # worker keeps its lease until it has stored the text.
        owned_by_worker = reply.status == Message.Status.STREAMING and bool(reply.lease_live)
        Message.objects.filter(pk=reply.pk).update(
            status=Message.Status.CANCELED,
            completed_at=Now(),
            updated_at=Now(),
            lease_expires_at=reply.lease_expires_at if owned_by_worker else None,
        )
        reply.refresh_from_db()
        if not owned_by_worker:
            transaction.on_commit(partial(reply_done_announce, reply=reply))
        transaction.on_commit(metrics.replies_finished.labels(Message.Status.CANCELED.value).inc)
    if owned_by_worker:
        return _canceled_text_store(reply=reply)
    return reply


def _canceled_text_store(*, reply: Message) -> Message:
    """Once the cancel is committed: mark it in the reply's stream, which stops its worker and
    gives the text it published until then, and store that text, unless the worker stored
    its own first (the same text). Returns the reply with its text.

    With Redis unavailable, or restarted empty and missing some of the text, the worker
    learns of the cancel from its next chunk (refused) or its lease (the keeper's next
    renewal, within a third of REPLY_LEASE_SECONDS) and stores what it generated: the reply
    returned here has the text stored so far, and a later GET the final one.
    """
    try:
        text = streaming.cancel_mark(reply_id=reply.pk, attempt=reply.attempts)
    except RedisError:
        logger.warning("Could not mark reply %s as canceled in Redis", reply.pk, exc_info=True)
        return reply
    if text is None:  # the stream lost chunks: the worker stores the text
        return reply
    stored = reply_cancel_settle(reply_id=reply.pk, attempt=reply.attempts, text=text)
    if stored is None:
        return Message.objects.get(pk=reply.pk)
    reply_done_announce(reply=stored)
    return stored


# --- An operator's retry of a failed reply -------------------------------------------------


def reply_retry(*, reply_id: int) -> Message:
    """Generate a failed reply again (the admin's action): back to `pending`, enqueued once
    this commits. Only the chatroom's latest reply, so the rule of sends holds (one reply in
    flight per chatroom, the latest); ReplyInProgress while another one is in flight.

    The retry is free: the prompt is not counted again, and the reply no longer names a day
    (`usage_day`), so failing again refunds nothing (its first failure may have already given
    the prompt back). `attempts`, the fencing token, goes on from where it was, so a worker of
    an earlier attempt still running can never write over the new one; `attempt_base` makes
    the retry limit count from here.
    """
    replies = Message.objects.filter(role=Message.Role.MODEL)
    chatroom_id = replies.filter(pk=reply_id).values_list("chatroom_id", flat=True).first()
    if chatroom_id is None:
        raise MessageNotFound()
    with transaction.atomic():
        # The send's lock first (the same order as a send), so a send and a retry in one
        # chatroom take turns. A failed reply changes under no other writer.
        Chatroom.objects.select_for_update().filter(pk=chatroom_id).values_list("pk").first()
        in_flight = (
            replies.filter(chatroom_id=chatroom_id, status__in=Message.IN_FLIGHT)
            .exclude(pk=reply_id)
            .values_list("pk", flat=True)
            .first()
        )
        if in_flight is not None:
            raise ReplyInProgress(reply_id=in_flight)
        latest = chatroom_latest_reply_status(chatroom_id=chatroom_id)
        if latest != (reply_id, Message.Status.FAILED.value):
            raise ReplyNotRetryable()
        replies.filter(pk=reply_id, status=Message.Status.FAILED).update(
            status=Message.Status.PENDING,
            content="",
            error_code="",
            error_message="",
            completed_at=None,
            lease_expires_at=None,
            usage_day=None,
            prompt_tokens=None,
            output_tokens=None,
            tokens_estimated=False,
            attempt_base=F("attempts"),
            updated_at=Now(),
        )
        transaction.on_commit(partial(_stream_forget, reply_id=reply_id))
        reply_enqueue_on_commit(reply_id=reply_id)
    logger.info("Reply %s: retried by an operator", reply_id)
    return Message.objects.get(pk=reply_id)


def _stream_forget(*, reply_id: int) -> None:
    """Before the enqueue (on_commit runs in order), so the failed attempt's `done` does not
    end the new attempt's followers. Redis down: its TTL removes the stream."""
    try:
        streaming.stream_forget(reply_id=reply_id)
    except RedisError:
        logger.warning("Could not delete reply %s's old stream", reply_id, exc_info=True)
