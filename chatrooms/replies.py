"""The life of a model reply: claim, lease, fenced final writes, cancel, sweep, and its stream.

    pending --claim--> streaming --> completed | failed | blocked
       ^                   |   \\--> pending (a retry, after a backoff)
       |                   |
       +---- sweep --------+  (the lease ran out: the worker died)
    pending | streaming --cancel--> canceled
    pending | streaming --no worker left--> failed  (by a send, poll or stream: see below)

A worker owns a reply while `lease_expires_at` is in the future. `attempts` counts the claims
and is the fencing token: every write after the claim is conditional on
(id, status, attempts=<mine>), so a worker that lost its lease can never write over a newer
attempt, and a reply is written once. A canceled reply whose lease is still set is waiting for
its worker to store the text generated so far; no lease means no worker will write again.

While a reply is `pending` after a failed attempt, `lease_expires_at` holds the time of its
retry, so the sweep does not run it before its backoff is over.

Times come from the database clock, the one clock every worker and web process shares.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import User
from chatrooms import streaming
from chatrooms.ai.base import Finish, Turn
from chatrooms.models import Chatroom, Message
from chatrooms.payloads import message_payload
from core.errors import ApiError, NotFound
from core.workers import workers_live
from usage.services import usage_refund

logger = logging.getLogger(__name__)

# Enough turns to fill any sensible AI_CONTEXT_TOKENS; context_fit picks the ones that fit.
HISTORY_MAX_MESSAGES = 200
SWEEP_BATCH = 500

Status = Message.Status


class NotCancelable(ApiError):
    status_code = 409
    code = "not_cancelable"
    message = "Only a model reply can be canceled."


@dataclass(frozen=True)
class Claim:
    """What a worker holds after claiming a reply: the fencing token and the reply's context."""

    reply_id: int
    attempt: int
    chatroom_id: int
    user_id: int
    system_prompt: str
    usage_day: dt.date | None


def db_connection_release() -> None:
    """Give this thread's database connection back to PostgreSQL.

    A worker thread waits seconds on the model and hundreds of them run at once, so none may
    keep a connection while it waits. Inside a transaction (a test run in-process) the
    connection is the caller's to manage.
    """
    if not connection.in_atomic_block:
        connection.close()


def _lease_end(seconds: float) -> Any:
    return Now() + dt.timedelta(seconds=seconds)


def _lease_live() -> ExpressionWrapper:
    """True while the row's lease is in the future: a worker is on it."""
    return ExpressionWrapper(Q(lease_expires_at__gt=Now()), output_field=BooleanField())


def _fenced(claim: Claim, status: str = Status.STREAMING) -> QuerySet[Message]:
    return Message.objects.filter(pk=claim.reply_id, status=status, attempts=claim.attempt)


# --- Worker side -----------------------------------------------------------------------------

_CLAIM_SQL = f"""
    UPDATE {Message._meta.db_table} AS m
    SET status = %(streaming)s, attempts = m.attempts + 1, updated_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease)s)
    FROM {Chatroom._meta.db_table} AS c
    WHERE m.id = %(id)s AND m.role = %(model)s AND c.id = m.chatroom_id
      AND (m.status = %(pending)s OR (m.status = %(streaming)s AND m.lease_expires_at < now()))
    RETURNING m.attempts, m.chatroom_id, c.user_id, c.system_prompt, m.usage_day
"""  # noqa: S608 (table names are ours, values are parameters)


def reply_claim(*, reply_id: int) -> Claim | None:
    """Take ownership of a reply that is pending, or streaming under a lease that ran out.

    One conditional UPDATE, so two workers can never both win. None: the reply is finished,
    gone, or owned by a live worker, and there is nothing to do.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "id": reply_id,
                "model": Message.Role.MODEL,
                "pending": Status.PENDING,
                "streaming": Status.STREAMING,
                "lease": settings.REPLY_LEASE_SECONDS,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    attempt, chatroom_id, user_id, system_prompt, usage_day = row
    return Claim(
        reply_id=reply_id,
        attempt=attempt,
        chatroom_id=chatroom_id,
        user_id=user_id,
        system_prompt=system_prompt,
        usage_day=usage_day,
    )


def reply_history(*, claim: Claim) -> list[Turn]:
    """The conversation before this reply, oldest first: the user's messages and the replies
    that completed with text (failed, canceled and empty ones are left out). A prompt whose
    reply was blocked is left out too: sent again, it would get every later reply blocked."""
    rows = (
        Message.objects.filter(chatroom_id=claim.chatroom_id, pk__lt=claim.reply_id)
        .order_by("-id")
        .values_list("role", "content", "status")[:HISTORY_MAX_MESSAGES]
    )
    turns: list[Turn] = []
    for role, text, status in reversed(rows):
        if role == Message.Role.USER:
            if text:
                turns.append(Turn(role="user", text=text))
        elif status == Status.BLOCKED:
            if turns and turns[-1].role == "user":
                turns.pop()
        elif status == Status.COMPLETED and text:
            turns.append(Turn(role="model", text=text))
    return turns


def reply_lease_renew(*, claim: Claim) -> bool:
    """Extend the lease. False: the reply is no longer this attempt's (canceled or taken)."""
    renewed = _fenced(claim).update(
        lease_expires_at=_lease_end(settings.REPLY_LEASE_SECONDS), updated_at=Now()
    )
    return renewed == 1


def reply_complete(*, claim: Claim, text: str, finish: Finish, model_name: str) -> Message | None:
    written = _fenced(claim).update(
        status=Status.COMPLETED,
        content=text,
        prompt_tokens=finish.prompt_tokens,
        output_tokens=finish.output_tokens,
        model_name=model_name,
        completed_at=Now(),
        lease_expires_at=None,
        updated_at=Now(),
    )
    return _reload(claim) if written else None


def reply_fail(
    *, claim: Claim, text: str, code: str, message: str, model_name: str
) -> Message | None:
    """The reply ends `failed` and its prompt is given back, in one transaction."""
    with transaction.atomic():
        written = _fenced(claim).update(
            status=Status.FAILED,
            content=text,
            error_code=code,
            error_message=message,
            model_name=model_name,
            completed_at=Now(),
            lease_expires_at=None,
            updated_at=Now(),
        )
        if written and claim.usage_day is not None:
            usage_refund(user_id=claim.user_id, day=claim.usage_day)
    return _reload(claim) if written else None


def reply_block(*, claim: Claim, text: str, reason: str, model_name: str) -> Message | None:
    """Stopped by the model's safety filters. Not refunded: the prompt was answered."""
    written = _fenced(claim).update(
        status=Status.BLOCKED,
        content=text,
        error_code="blocked",
        error_message=f"The model's safety filters blocked this reply ({reason}).",
        model_name=model_name,
        completed_at=Now(),
        lease_expires_at=None,
        updated_at=Now(),
    )
    return _reload(claim) if written else None


def reply_retry_later(*, claim: Claim, delay_seconds: float) -> bool:
    """Back to `pending` until the retry in `delay_seconds` (the lease field holds that time)."""
    written = _fenced(claim).update(
        status=Status.PENDING, lease_expires_at=_lease_end(delay_seconds), updated_at=Now()
    )
    return written == 1


def reply_cancel_settle(*, claim: Claim, text: str, model_name: str) -> Message | None:
    """Store the text generated before a cancel, once, if this attempt was the one canceled."""
    written = (
        _fenced(claim, Status.CANCELED)
        # Only while the lease lasts: once it ran out, streams ended from the database and
        # the canceled reply's content is final.
        .filter(lease_expires_at__gt=Now())
        .update(content=text, model_name=model_name, lease_expires_at=None, updated_at=Now())
    )
    return _reload(claim) if written else None


def _reload(claim: Claim) -> Message:
    return Message.objects.get(pk=claim.reply_id)


# --- Cancel (API) ----------------------------------------------------------------------------


def reply_cancel(*, user: User, chatroom_id: int, message_id: int) -> Message:
    """Cancel a reply that is pending or streaming; a finished one is returned unchanged.

    A streaming reply keeps the text generated so far: its worker stops at the next chunk and
    stores it (the message returned here may not have it yet). A canceled prompt is not given
    back.
    """
    with transaction.atomic():
        reply = (
            Message.objects.select_for_update(of=("self",))
            .annotate(lease_live=_lease_live())
            .filter(pk=message_id, chatroom_id=chatroom_id, chatroom__user=user)
            .first()
        )
        if reply is None:
            raise NotFound("Message not found.")
        if reply.role != Message.Role.MODEL:
            raise NotCancelable()
        if reply.status not in Message.IN_FLIGHT:
            return reply
        # A pending reply has no worker (nor has one whose lease ran out): it ends here. A live
        # worker keeps its lease until it has stored the text.
        owned_by_worker = reply.status == Status.STREAMING and bool(reply.lease_live)
        Message.objects.filter(pk=reply.pk).update(
            status=Status.CANCELED,
            completed_at=Now(),
            updated_at=Now(),
            lease_expires_at=reply.lease_expires_at if owned_by_worker else None,
        )
        reply.refresh_from_db()
        if owned_by_worker:
            transaction.on_commit(partial(_cancel_signal, reply_id=reply.pk))
        else:
            transaction.on_commit(
                partial(_done_publish, reply_id=reply.pk, payload=message_payload(reply))
            )
    return reply


def _cancel_signal(*, reply_id: int) -> None:
    try:
        streaming.cancel_request(reply_id=reply_id)
    except RedisError:
        # The worker still finds out when it next renews its lease.
        logger.warning("Could not flag reply %s as canceled in Redis", reply_id, exc_info=True)


def _done_publish(*, reply_id: int, payload: dict[str, Any]) -> None:
    try:
        streaming.stream_done_publish(reply_id=reply_id, message=payload)
    except RedisError:
        # Followers fall back to the database at their next keep-alive.
        logger.warning("Could not publish the end of reply %s", reply_id, exc_info=True)


def reply_done_publish(*, reply: Message) -> None:
    """Tell the reply's followers it is over (best effort: they also poll the database)."""
    _done_publish(reply_id=reply.pk, payload=message_payload(reply))


# --- Sweep (beat) ------------------------------------------------------------------------------


def replies_sweep(*, batch: int = SWEEP_BATCH) -> list[int]:
    """Enqueue again the replies no worker is on: a lost broker message, a dead worker.

    - `streaming` with a lease that ran out: its worker died; back to `pending`.
    - `pending` for longer than AI_PENDING_SWEEP_AGE_SECONDS (and past any retry time).

    Each reply found is marked (`updated_at`), so the next sweeps leave it alone for another
    AI_PENDING_SWEEP_AGE_SECONDS. Enqueueing twice is harmless: only one claim can win.
    Returns the ids enqueued.
    """
    stale_before = Now() - dt.timedelta(seconds=settings.AI_PENDING_SWEEP_AGE_SECONDS)
    with transaction.atomic():
        lapsed = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=Status.STREAMING, lease_expires_at__lt=Now())
            .values_list("pk", flat=True)[:batch]
        )
        Message.objects.filter(pk__in=lapsed).update(
            status=Status.PENDING, lease_expires_at=None, updated_at=Now()
        )
        waiting = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=Status.PENDING, updated_at__lt=stale_before)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now()))
            .exclude(pk__in=lapsed)
            .values_list("pk", flat=True)[:batch]
        )
        Message.objects.filter(pk__in=waiting).update(updated_at=Now())
        reply_ids = lapsed + waiting
        if reply_ids:
            transaction.on_commit(partial(_enqueue, reply_ids=reply_ids))
    if reply_ids:
        logger.info("Sweep: enqueued replies %s again", reply_ids)
    return reply_ids


def _enqueue(*, reply_ids: list[int]) -> None:
    # Imported here: the task module imports this one.
    from chatrooms.tasks import reply_generate

    for reply_id in reply_ids:
        reply_generate.delay(reply_id)


# --- A reply no worker is left to finish --------------------------------------------------------


def reply_abandoned_settle(*, reply_id: int) -> Message | None:
    """Fail a reply that no worker is left to finish, giving its prompt back; None otherwise.

    Abandoned means: in flight, idle for REPLY_ABANDONED_AFTER_SECONDS past its lease (or, when
    pending, since it was last enqueued), and no worker sent a heartbeat within
    WORKER_HEARTBEAT_MAX_AGE_SECONDS. With a live worker the sweep recovers such a reply; with
    none, no sweep runs and the reply would block its chatroom for good. The text a dead
    worker streamed was never stored: it is dropped along with the prompt's count, so the
    prompt is never both refunded and answered. A worker that comes back later finds the
    reply finished, and its fenced writes change nothing.
    """
    idle_before = Now() - dt.timedelta(seconds=settings.REPLY_ABANDONED_AFTER_SECONDS)
    with transaction.atomic():
        written = (
            Message.objects.filter(
                pk=reply_id, role=Message.Role.MODEL, status__in=Message.IN_FLIGHT
            )
            .filter(
                Q(lease_expires_at__lt=idle_before)
                | Q(lease_expires_at__isnull=True, updated_at__lt=idle_before)
            )
            .filter(~Exists(workers_live()))
            .update(
                status=Status.FAILED,
                error_code="worker_unavailable",
                error_message="No worker was available to generate this reply; "
                "its prompt was given back.",
                completed_at=Now(),
                lease_expires_at=None,
                updated_at=Now(),
            )
        )
        if not written:
            return None
        reply = Message.objects.select_related("chatroom").get(pk=reply_id)
        if reply.usage_day is not None:
            usage_refund(user_id=reply.chatroom.user_id, day=reply.usage_day)
        transaction.on_commit(
            partial(_done_publish, reply_id=reply.pk, payload=message_payload(reply))
        )
    logger.warning("Reply %s: no worker left to finish it; failed", reply_id)
    return reply


def reply_settle_if_abandoned(*, reply: Message) -> Message:
    """`reply` as it is, or failed first when no worker is left to finish it.

    For the paths that watch a reply (polling it, following its stream), so that a reply with
    no worker left ends for its watchers too. By the app's clock, only a reply that looks
    idle long enough costs the conditional write; the write checks by the database's.
    """
    if reply.status not in Message.IN_FLIGHT:
        return reply
    idle_since = reply.lease_expires_at or reply.updated_at
    if idle_since > timezone.now() - dt.timedelta(seconds=settings.REPLY_ABANDONED_AFTER_SECONDS):
        return reply
    return reply_abandoned_settle(reply_id=reply.pk) or reply


# --- Following a reply (the SSE endpoint) ----------------------------------------------------


async def reply_events(*, reply: Message) -> AsyncIterator[streaming.SseEvent]:
    """The events of one reply for one client: what was generated so far, then the rest as it
    comes, then `done` with the final message; keep-alives while nothing happens.

    A finished reply is served from the database at once. While following, each quiet
    keep-alive interval also checks the database, so a reply whose `done` never reached Redis
    (a Redis restart, a worker that died after a cancel) still ends.
    """
    follower = streaming.ReplyFollower()
    try:
        if reply.status in Message.FINISHED:
            # Unless a live worker is still storing the text of a canceled reply: follow that.
            current, settled = (
                (reply, True)
                if reply.lease_expires_at is None
                else await _reply_settled(reply_id=reply.pk)
            )
            if current is not None and settled:
                for event in follower.finish(message_payload(current)):
                    yield event
                return
        async with streaming.ReplyEventSource(reply_id=reply.pk) as source:
            backlog = await source.backlog()
            follower.skip_superseded(backlog)
            for event in follower.feed(backlog):
                yield event
            while not follower.finished:
                entries = await source.wait(seconds=settings.REPLY_STREAM_KEEPALIVE_SECONDS)
                if entries:
                    for event in follower.feed(entries):
                        yield event
                    continue
                yield streaming.KEEPALIVE
                current, settled = await _reply_settled(reply_id=reply.pk)
                if current is None:
                    yield streaming.SseEvent(
                        "error", {"code": "not_found", "message": "The message was deleted."}
                    )
                    return
                if settled:
                    for event in follower.finish(message_payload(current)):
                        yield event
    except (RedisError, DatabaseError):
        logger.warning("Reply %s: the event stream broke off", reply.pk, exc_info=True)
        yield streaming.SseEvent(
            "error",
            {
                "code": "stream_unavailable",
                "message": "The reply's live stream is unavailable; poll the message instead.",
            },
        )


async def _reply_settled(*, reply_id: int) -> tuple[Message | None, bool]:
    """The reply, and whether it is finished with no worker left to publish its end."""
    reply = await Message.objects.annotate(lease_live=_lease_live()).filter(pk=reply_id).afirst()
    abandoned = None
    if reply is not None and reply.status in Message.IN_FLIGHT and not reply.lease_live:
        current = await sync_to_async(reply_settle_if_abandoned)(reply=reply)
        abandoned = current if current.status in Message.FINISHED else None
    await sync_to_async(db_connection_release)()
    if abandoned is not None:
        return abandoned, True
    if reply is None:
        return None, False
    return reply, reply.status in Message.FINISHED and not reply.lease_live
