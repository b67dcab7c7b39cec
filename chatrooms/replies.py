"""The life of a model reply on the worker side: claim, history, generate, record, retry,
fail, block, cancel-settle, sweep, and settling a reply no worker is left to finish.

    pending --claim--> streaming --> completed | failed | blocked
       ^                   |   \\--> pending (a retry, after a backoff)
       |                   |
       +---- sweep --------+  (the lease ran out: the worker died)
    pending | streaming --cancel--> canceled                     (chatrooms.services)
    pending | streaming --no worker left--> failed   (a send, a poll or a stream notices)

A worker owns a reply while `lease_expires_at` is in the future. `attempts` counts the claims
and is the fencing token: every write after the claim is conditional on
(id, status, attempts=<mine>), so a worker that lost its lease can never write over a newer
attempt, and a reply is written once. A canceled reply whose lease is still set is waiting for
its worker to store the text generated so far; no lease means no worker will write again.
While a reply is `pending` after a failed attempt, `lease_expires_at` holds the time of its
retry, so the sweep does not run it before its backoff is over. Times come from the database
clock, the one clock every worker and web process shares.

The process's keeper thread (`chatrooms.keeper`) renews the leases of all the replies the
process is generating in one UPDATE every third of a lease, and fails a reply at its deadline
(REPLY_TIME_LIMIT_SECONDS) with the text published so far; neither waits for a chunk, so a
model that keeps a thread waiting cannot outlive the lease nor the deadline. The generating
thread stops at its next chunk, and its own final write is refused by the fence.

A worker thread holds a database connection only around its claim (which reads the history
too) and its final write (`core.db`); while the model streams, each chunk costs one Redis
round trip (a script that publishes it unless the reply was canceled) and no database write.
PostgreSQL restarting or down does not lose a reply: once claimed, its database steps are
tried again until the database answers, for as long as the lease would last.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, router, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from redis.exceptions import RedisError

from chatrooms import metrics, streaming
from chatrooms.ai.base import AiBlocked, AiError, AiModel, Finish, StreamItem, TextDelta, Turn
from chatrooms.ai.context import context_fit
from chatrooms.ai.registry import get_model
from chatrooms.keeper import Generation, LeaseKeeper
from chatrooms.models import Chatroom, Message
from chatrooms.payloads import message_payload
from core.db import db_connection_release, db_patiently, db_session
from core.request_context import request_id_var
from core.workers import workers_live
from usage.selectors import usage_today
from usage.services import tokens_add_sql, usage_refund

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A failed reply's `error.message`, by its code: our own words. The model vendor's (which may
# name its internals, quotas or keys) go to the log with the HTTP status, never to a user.
FAILURE_MESSAGES = {
    "ai_unavailable": "The model is unavailable right now; please try again later.",
    "ai_error": "The model could not answer this request.",
    "ai_timeout": "The model took too long to answer.",
    "empty_reply": "The model returned an empty reply.",
    "worker_unavailable": "No worker was available to generate this reply; "
    "its prompt was given back.",
}

# What PostgreSQL cannot store in text: NUL, and (from JSON's \ud83d escapes) lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# After Redis failed a chunk, the next chunks are not published for a pause (each try waits
# up to its timeouts while the model streams on): 1 s, doubling after each failure in a row
# up to 30 s, so a Redis that drops packets slows the attempt down by a few tries at most.
_PUBLISH_PAUSE_SECONDS = 1.0
_PUBLISH_PAUSE_MAX_SECONDS = 30.0

# Enough turns to fill any sensible AI_CONTEXT_TOKENS; context_fit picks the ones that fit.
HISTORY_MAX_MESSAGES = 200
SWEEP_BATCH = 500

Status = Message.Status


@dataclass(frozen=True)
class Claim:
    """What a worker holds after claiming a reply: the fencing token and the reply's context."""

    reply_id: int
    attempt: int
    chatroom_id: int
    user_id: int
    system_prompt: str
    usage_day: dt.date | None
    attempt_base: int = 0  # claims before an operator's retry (`Message.attempt_base`)
    # The conversation before the reply, read with the claim (`reply_claim`).
    history: tuple[Turn, ...] = field(default=(), compare=False, repr=False)
    # The request that queued it, for the lines the lease keeper's thread writes about it.
    request_id: str | None = field(default=None, compare=False)

    @property
    def tries(self) -> int:
        """This attempt's number since the reply was enqueued or retried by an operator: the
        one the retry limit and the backoff count."""
        return self.attempt - self.attempt_base


def lease_live() -> ExpressionWrapper:
    """True while the row's lease is in the future: a worker is on it."""
    return ExpressionWrapper(Q(lease_expires_at__gt=Now()), output_field=BooleanField())


def _lease_end(seconds: float) -> Any:
    return Now() + dt.timedelta(seconds=seconds)


def _fenced(claim: Claim, status: str = Status.STREAMING) -> QuerySet[Message]:
    return Message.objects.filter(pk=claim.reply_id, status=status, attempts=claim.attempt)


# --- One attempt, end to end --------------------------------------------------------------------


def reply_attempt(*, reply_id: int) -> float | None:
    """Make one attempt at a reply: claim it, generate, record the outcome. Safe to run any
    number of times: only a claim works. Returns the delay before a retry, or None when done.

    Raises OperationalError when PostgreSQL does not answer before the claim (nothing is
    lost: the caller tries again later)."""
    model = get_model()
    with db_session():
        claim = reply_claim(reply_id=reply_id, model_name=model.name)
    if claim is None:
        logger.info("Reply %s: nothing to do (finished, or another worker has it)", reply_id)
        return None
    # From here the keeper renews the lease, through the final write and its retries.
    with _keeper.hold(claim, seconds=settings.REPLY_TIME_LIMIT_SECONDS) as generation:
        if claim.tries > _max_attempts():
            # Workers keep dying on this reply (or its retries were lost): stop trying.
            logger.warning("Reply %s: not generated in %s attempts", reply_id, _max_attempts())
            outcome = Outcome(Ending.FAILED, "", error_code="ai_unavailable")
        else:
            _publish(
                streaming.stream_attempt_start_publish, reply_id=reply_id, attempt=claim.attempt
            )
            turns = context_fit(
                turns=claim.history,
                budget_tokens=settings.AI_CONTEXT_TOKENS,
                count_tokens=model.count_tokens,
                system_prompt=claim.system_prompt,
            )
            outcome = _generate(model=model, claim=claim, turns=turns, generation=generation)
        reply, delay = _patiently(lambda: _record(outcome=outcome, claim=claim), claim=claim)
    if reply is not None:
        reply_done_announce(reply=reply)
        logger.info("Reply %s: %s (attempt %s)", reply_id, reply.status, claim.attempt)
    elif outcome.ending is Ending.STOPPED:
        logger.info(
            "Reply %s attempt %s: stopped (%s)", reply_id, claim.attempt, generation.stopped
        )
    return delay


def _patiently(step: Callable[[], T], *, claim: Claim) -> T:
    # No other worker takes the reply while its lease lasts, so waiting that long loses
    # nothing; after it, the task's retry claims the reply afresh.
    return db_patiently(
        step, what=f"Reply {claim.reply_id}", give_up_after=settings.REPLY_LEASE_SECONDS
    )


def retry_delay(attempt: int) -> float:
    """Exponential backoff after failed attempt number `attempt`: 2 s, 4 s, 8 s... by default."""
    return float(settings.AI_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))


def _max_attempts() -> int:
    return settings.AI_MAX_RETRIES + 1


# --- Claim and history ------------------------------------------------------------------------

# The claim, and the conversation before the reply in the same round trip: its newest
# messages, oldest first, each as [role, content, status].
_CLAIM_SQL = f"""
    UPDATE {Message._meta.db_table} AS m
    SET status = %(streaming)s, attempts = m.attempts + 1, updated_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease)s), model_name = %(model_name)s
    FROM {Chatroom._meta.db_table} AS c
    WHERE m.id = %(id)s AND m.role = %(model)s AND c.id = m.chatroom_id
      AND (m.status = %(pending)s OR (m.status = %(streaming)s AND m.lease_expires_at < now()))
    RETURNING m.attempts, m.chatroom_id, c.user_id, c.system_prompt, m.usage_day, m.attempt_base,
      (SELECT json_agg(json_build_array(h.role, h.content, h.status) ORDER BY h.id)
       FROM (SELECT id, role, content, status FROM {Message._meta.db_table}
             WHERE chatroom_id = m.chatroom_id AND id < m.id AND NOT superseded
             ORDER BY id DESC LIMIT %(history)s) AS h)
"""  # noqa: S608 (table names are ours, values are parameters)


def reply_claim(*, reply_id: int, model_name: str) -> Claim | None:
    """Take ownership of a reply that is pending, or streaming under a lease that ran out, to
    generate it with the model `model_name`; the claim holds the conversation before it.

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
                "model_name": model_name,
                "history": HISTORY_MAX_MESSAGES,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    attempt, chatroom_id, user_id, system_prompt, usage_day, attempt_base, messages = row
    return Claim(
        reply_id=reply_id,
        attempt=attempt,
        chatroom_id=chatroom_id,
        user_id=user_id,
        system_prompt=system_prompt,
        usage_day=usage_day,
        attempt_base=attempt_base,
        history=_history(messages or []),
        request_id=request_id_var.get(),
    )


def _history(messages: list[list[str]]) -> tuple[Turn, ...]:
    """The conversation the model sees, from the messages before the reply (oldest first):
    the user's messages and the replies that completed with text (failed, canceled and empty
    ones are left out, and replies regenerated since). A prompt whose reply was blocked is
    left out too: sent again, it would get every later reply blocked."""
    turns: list[Turn] = []
    for role, text, status in messages:
        if role == Message.Role.USER:
            if text:
                turns.append(Turn(role="user", text=text))
        elif status == Status.BLOCKED:
            if turns and turns[-1].role == "user":
                turns.pop()
        elif status == Status.COMPLETED and text:
            turns.append(Turn(role="model", text=text))
    return tuple(turns)


_RENEW_SQL = f"""
    UPDATE {Message._meta.db_table} AS m
    SET lease_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now()
    FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS held(id, attempt)
    WHERE m.id = held.id AND m.attempts = held.attempt AND m.status = %(streaming)s
    RETURNING m.id, m.attempts
"""  # noqa: S608 (the table name is ours, values are parameters)


def reply_leases_renew(*, claims: list[Claim]) -> set[Claim]:
    """Extend the leases of these claims, in one statement. Returns the claims still held;
    the others' replies are no longer theirs (canceled, or taken after a lapse)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _RENEW_SQL,
            {
                "lease": settings.REPLY_LEASE_SECONDS,
                "ids": [claim.reply_id for claim in claims],
                "attempts": [claim.attempt for claim in claims],
                "streaming": Status.STREAMING,
            },
        )
        renewed = set(cursor.fetchall())
    return {claim for claim in claims if (claim.reply_id, claim.attempt) in renewed}


# --- Generate: stream from the model, publish each chunk ---------------------------------------


class Ending(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    RETRY = "retry"
    STOPPED = "stopped"  # canceled, or the lease was lost: see what the database says


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    text: str
    finish: Finish | None = None
    error_code: str = ""
    block_reason: str = ""


def _generate(
    *, model: AiModel, claim: Claim, turns: list[Turn], generation: Generation[Claim]
) -> Outcome:
    """Stream from the model and publish each chunk; no database connection is held. The
    keeper renews the lease meanwhile, and may stop the generation first (its deadline, a
    lost lease): then the outcome is STOPPED, and the reply's end is written elsewhere."""
    outcome = _stream(model=model, claim=claim, turns=turns, generation=generation)
    if outcome.ending is not Ending.STOPPED and not generation.end():
        return Outcome(Ending.STOPPED, generation.text)
    return outcome


def _stream(
    *, model: AiModel, claim: Claim, turns: list[Turn], generation: Generation[Claim]
) -> Outcome:
    publish = _DeltaPublisher(claim)
    asked_at = time.perf_counter()
    first_text = True
    try:
        with _closing(model.stream(system_prompt=claim.system_prompt, turns=turns)) as items:
            for item in items:
                if isinstance(item, Finish):
                    text = generation.text
                    if not text.strip():  # whitespace alone is no answer either
                        return Outcome(Ending.FAILED, text, error_code="empty_reply")
                    return Outcome(Ending.COMPLETED, text, finish=item)
                if not isinstance(item, TextDelta):
                    continue
                if first_text:
                    first_text = False
                    metrics.model_first_token.observe(time.perf_counter() - asked_at)
                chunk = _storable(item.text)
                if chunk and not generation.extend(chunk, publish=publish):
                    return Outcome(Ending.STOPPED, generation.text)
        # A model that ends without a Finish broke its protocol: treat it as a cut stream.
        raise AiError("The model's stream ended early.", retryable=True)
    except AiBlocked as exc:
        return Outcome(Ending.BLOCKED, generation.text, block_reason=exc.reason)
    except AiError as exc:
        logger.warning(
            "Reply %s attempt %s: %s (HTTP status %s)",
            claim.reply_id,
            claim.attempt,
            exc.detail,
            exc.status,
        )
        if exc.retryable and claim.tries < _max_attempts():
            return Outcome(Ending.RETRY, generation.text)
        code = "ai_unavailable" if exc.retryable else exc.code
        return Outcome(Ending.FAILED, generation.text, error_code=code)
    except SoftTimeLimitExceeded:  # the prefork pool's time limit (threads have the keeper)
        return Outcome(Ending.FAILED, generation.text, error_code="ai_timeout")
    except Exception:
        # A bug, not an outage: fail now rather than retry it.
        logger.exception("Reply %s attempt %s crashed", claim.reply_id, claim.attempt)
        return Outcome(Ending.FAILED, generation.text, error_code="ai_error")
    finally:
        metrics.model_latency.observe(time.perf_counter() - asked_at)


class _DeltaPublisher:
    """Publishes one attempt's chunks, each with its offset in the attempt's text. Redis being
    down costs the live stream only: the chunks are still generated and stored, publishing
    resumes a moment later, and followers see the hole by the offsets."""

    def __init__(self, claim: Claim) -> None:
        self._claim = claim
        self._offset = 0
        self._paused_until = 0.0
        self._pause = _PUBLISH_PAUSE_SECONDS

    def __call__(self, chunk: str) -> bool:
        """False: a cancel was requested, and the chunk was not published."""
        offset = self._offset
        self._offset += len(chunk)
        if time.monotonic() < self._paused_until:
            return True
        try:
            canceled = streaming.stream_delta_publish(
                reply_id=self._claim.reply_id,
                attempt=self._claim.attempt,
                offset=offset,
                text=chunk,
            )
        except RedisError:
            logger.warning("Reply %s: cannot publish chunks", self._claim.reply_id)
            self._paused_until = time.monotonic() + self._pause
            self._pause = min(self._pause * 2, _PUBLISH_PAUSE_MAX_SECONDS)
            return True
        self._pause = _PUBLISH_PAUSE_SECONDS
        return not canceled


def _storable(text: str) -> str:
    """`text` as the database can store it (and as followers see it): NUL characters
    removed, lone surrogates replaced by U+FFFD."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(lambda found: "" if found[0] == "\x00" else "\ufffd", text)


def _leases_keep(claims: list[Claim]) -> set[Claim]:
    """The keeper's renewal. Outside the slots of `db_session`: a renewal must not wait
    behind the generating threads' writes (at most one connection more per process)."""
    try:
        return reply_leases_renew(claims=claims)
    finally:
        db_connection_release()


def _deadline_fail(claim: Claim, text: str) -> None:
    """The keeper's end of a reply at REPLY_TIME_LIMIT_SECONDS: failed with the text
    published so far, through the same fenced write as the worker's own."""
    request_id = request_id_var.set(claim.request_id)
    try:
        try:
            reply = reply_fail(claim=claim, text=text, code="ai_timeout")
        finally:
            db_connection_release()
        if reply is not None:
            reply_done_announce(reply=reply)
            logger.info(
                "Reply %s: failed at its deadline (attempt %s)", claim.reply_id, claim.attempt
            )
    finally:
        request_id_var.reset(request_id)


_keeper: LeaseKeeper[Claim] = LeaseKeeper(renew=_leases_keep, expire=_deadline_fail)


@contextmanager
def _closing(stream: Iterator[StreamItem]) -> Iterator[Iterator[StreamItem]]:
    """Close the model's stream when we stop reading early, so its HTTP response is freed."""
    try:
        yield stream
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _publish(publish: Callable[..., None], **kwargs: Any) -> None:
    """Redis being down costs the live stream only: followers fall back to the database."""
    try:
        publish(**kwargs)
    except RedisError:
        logger.warning("Could not publish to reply %s's stream", kwargs.get("reply_id"))


def reply_done_announce(*, reply: Message) -> None:
    """Tell the reply's followers it is over (best effort: they also check the database)."""
    _publish(streaming.stream_done_publish, reply_id=reply.pk, message=message_payload(reply))


# --- Record: the fenced final writes -----------------------------------------------------------


def _record(*, outcome: Outcome, claim: Claim) -> tuple[Message | None, float | None]:
    """The fenced final write. Returns the finished reply (to announce) and any retry delay;
    no reply when the write was refused (its end was written elsewhere)."""
    reply: Message | None = None
    text = outcome.text
    if outcome.ending is Ending.COMPLETED:
        assert outcome.finish is not None
        reply = reply_complete(claim=claim, text=text, finish=outcome.finish)
    elif outcome.ending is Ending.FAILED:
        reply = reply_fail(claim=claim, text=text, code=outcome.error_code)
    elif outcome.ending is Ending.BLOCKED:
        reply = reply_block(claim=claim, text=text, reason=outcome.block_reason)
    elif outcome.ending is Ending.RETRY:
        delay = retry_delay(claim.tries)
        if reply_retry_later(claim=claim, delay_seconds=delay):
            return None, delay
    if reply is None:
        # The write was refused: canceled meanwhile (keep the text), ended at its deadline by
        # the keeper, or this attempt is stale.
        reply = reply_cancel_settle(reply_id=claim.reply_id, attempt=claim.attempt, text=text)
    return reply, None


# The model's columns: not the table's search_vector (migration 0006), which only search reads.
# None of them converts its database value (no `from_db_value`), so a row of them is what
# `Model.from_db` takes as is: no RawQuerySet, which would work out the columns every time.
_MESSAGE_FIELDS = [str(field.attname) for field in Message._meta.concrete_fields]
if any(hasattr(field, "from_db_value") for field in Message._meta.concrete_fields):
    raise ImproperlyConfigured("A Message field converts its database value: use raw() in _end.")
_MESSAGE_COLUMNS = ", ".join(
    connection.ops.quote_name(str(field.column)) for field in Message._meta.concrete_fields
)


def _end(claim: Claim, *, tokens: int = 0, **fields: Any) -> Message | None:
    """The attempt's final write, fenced (only while this attempt still streams): `fields`,
    the end time, the lease released, and `tokens` added to the user's count of today.
    Returns the reply as written, or None when the fence refused it (nothing counted then).
    One statement (UPDATE ... RETURNING), not an update and a read: it is on every reply's
    path."""
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = [connection.ops.quote_name(name) for name in fields]
    assignments = ", ".join(f"{column} = %s" for column in columns)
    update = (
        f"UPDATE {table} SET {assignments}, completed_at = STATEMENT_TIMESTAMP(), "  # noqa: S608
        "lease_expires_at = NULL, updated_at = STATEMENT_TIMESTAMP() "
        f"WHERE id = %s AND status = %s AND attempts = %s RETURNING {_MESSAGE_COLUMNS}"
    )
    params = [*fields.values(), claim.reply_id, Status.STREAMING.value, claim.attempt]
    if tokens:
        counted = tokens_add_sql(written="written")
        sql = f"WITH written AS ({update}), counted AS ({counted}) SELECT * FROM written"  # noqa: S608
        params += [claim.user_id, usage_today(), tokens]
    else:
        sql = update
    database = router.db_for_write(Message)
    with connections[database].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    # When the status is committed: reply_fail's transaction may still roll it back.
    transaction.on_commit(metrics.replies_finished.labels(fields["status"]).inc, using=database)
    return Message.from_db(database, _MESSAGE_FIELDS, row)


def reply_complete(*, claim: Claim, text: str, finish: Finish) -> Message | None:
    written = _end(
        claim,
        status=Status.COMPLETED.value,
        content=text,
        prompt_tokens=finish.prompt_tokens,
        output_tokens=finish.output_tokens,
        tokens_estimated=finish.tokens_estimated,
        tokens=(finish.prompt_tokens or 0) + (finish.output_tokens or 0),
    )
    if written is not None:
        metrics.model_tokens.labels("in").inc(finish.prompt_tokens or 0)
        metrics.model_tokens.labels("out").inc(finish.output_tokens or 0)
    return written


def reply_fail(*, claim: Claim, text: str, code: str) -> Message | None:
    """The reply ends `failed` (`code`, a key of FAILURE_MESSAGES), keeping `text`.

    Its prompt is given back in the same transaction only when the user got nothing of value
    (no text but whitespace): a reply that fails after text was streamed keeps its text and
    its count, so a prompt is never both refunded and answered.
    """
    with transaction.atomic():
        written = _end(
            claim,
            status=Status.FAILED.value,
            content=text,
            error_code=code,
            error_message=FAILURE_MESSAGES[code],
        )
        if written is not None and claim.usage_day is not None and not text.strip():
            usage_refund(user_id=claim.user_id, day=claim.usage_day, chatroom_id=claim.chatroom_id)
    return written


def reply_block(*, claim: Claim, text: str, reason: str) -> Message | None:
    """Stopped by the model's safety filters. Not refunded: the prompt was answered."""
    return _end(
        claim,
        status=Status.BLOCKED.value,
        content=text,
        error_code="blocked",
        error_message=f"The model's safety filters blocked this reply ({reason}).",
    )


def reply_retry_later(*, claim: Claim, delay_seconds: float) -> bool:
    """Back to `pending` until the retry in `delay_seconds` (the lease field holds that time)."""
    written = _fenced(claim).update(
        status=Status.PENDING, lease_expires_at=_lease_end(delay_seconds), updated_at=Now()
    )
    return written == 1


def reply_cancel_settle(*, reply_id: int, attempt: int, text: str) -> Message | None:
    """Store the text generated before a cancel, once, if attempt `attempt` was the one
    canceled: by the cancel itself (the text its worker published before the cancel mark) or
    by that worker (the same text, or all it generated when Redis was unavailable)."""
    written = (
        Message.objects.filter(pk=reply_id, status=Status.CANCELED, attempts=attempt)
        # Only while the lease lasts: once it ran out, streams ended from the database and
        # the canceled reply's content is final.
        .filter(lease_expires_at__gt=Now())
        .update(content=text, lease_expires_at=None, updated_at=Now())
    )
    return Message.objects.get(pk=reply_id) if written else None


# --- Sweep (beat) ------------------------------------------------------------------------------


def _lapsed_replies() -> QuerySet[Message]:
    """`streaming` replies whose lease ran out: their worker died."""
    return Message.objects.filter(status=Status.STREAMING, lease_expires_at__lt=Now())


def _waiting_replies(*, older_than_seconds: int) -> QuerySet[Message]:
    """`pending` replies untouched for `older_than_seconds`, past any retry time."""
    stale_before = Now() - dt.timedelta(seconds=older_than_seconds)
    return Message.objects.filter(status=Status.PENDING, updated_at__lt=stale_before).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now())
    )


def replies_stuck(*, older_than_seconds: int, limit: int = SWEEP_BATCH) -> list[Message]:
    """What a sweep with this age would enqueue again, changing nothing (oldest first)."""
    lapsed = list(_lapsed_replies().order_by("updated_at")[:limit])
    waiting = _waiting_replies(older_than_seconds=older_than_seconds).order_by("updated_at")
    return lapsed + list(waiting[: limit - len(lapsed)])


def replies_sweep(*, batch: int = SWEEP_BATCH, older_than_seconds: int | None = None) -> list[int]:
    """The replies no worker is on, to enqueue again: a lost broker message, a dead worker.

    - `streaming` with a lease that ran out: its worker died; back to `pending`.
    - `pending` for longer than `older_than_seconds` (AI_PENDING_SWEEP_AGE_SECONDS unless
      given) and past any retry time.

    Each reply found is marked (`updated_at`), so the next sweeps leave it alone for another
    AI_PENDING_SWEEP_AGE_SECONDS. Enqueueing twice is harmless: only one claim can win.
    Returns their ids, committed; the caller enqueues them.
    """
    if older_than_seconds is None:
        older_than_seconds = settings.AI_PENDING_SWEEP_AGE_SECONDS
    with transaction.atomic():
        lapsed = list(
            _lapsed_replies()
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:batch]
        )
        Message.objects.filter(pk__in=lapsed).update(
            status=Status.PENDING, lease_expires_at=None, updated_at=Now()
        )
        waiting = list(
            _waiting_replies(older_than_seconds=older_than_seconds)
            .select_for_update(skip_locked=True)
            .exclude(pk__in=lapsed)
            .values_list("pk", flat=True)[:batch]
        )
        Message.objects.filter(pk__in=waiting).update(updated_at=Now())
    reply_ids = lapsed + waiting
    if reply_ids:
        logger.info("Sweep: replies %s to enqueue again", reply_ids)
    return reply_ids


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
                error_message=FAILURE_MESSAGES["worker_unavailable"],
                completed_at=Now(),
                lease_expires_at=None,
                updated_at=Now(),
            )
        )
        if not written:
            return None
        reply = Message.objects.select_related("chatroom").get(pk=reply_id)
        if reply.usage_day is not None:
            usage_refund(
                user_id=reply.chatroom.user_id, day=reply.usage_day, chatroom_id=reply.chatroom_id
            )
        transaction.on_commit(partial(reply_done_announce, reply=reply))
        # Counted when committed: a caller's transaction (a send, a deletion) may roll back.
        transaction.on_commit(metrics.replies_finished.labels(Status.FAILED.value).inc)
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
