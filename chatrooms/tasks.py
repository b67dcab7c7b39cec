"""Celery tasks of the reply pipeline: generate one reply, and sweep up the lost ones.

The worker runs many threads (`--pool threads`); each reply spends seconds waiting on the
model. A thread holds a database connection only around its claim, its reading of the
history and its final write, and at most REPLY_DB_CONNECTIONS threads of a process hold one
at a time, so hundreds of replies in flight need a handful of PostgreSQL connections. While
the model streams, each chunk costs one Redis round trip (publish it, and read the cancel
flag) and no database write.

PostgreSQL restarting or down does not lose a reply, nor leave it to the sweep: a task that
could not claim its reply is retried a second later; once claimed, the reply's database
steps are tried again until the database answers (for as long as the lease would last), and
a lease renewal that fails is tried again at a later chunk while the model goes on.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError
from redis.exceptions import RedisError

from chatrooms import replies, services, streaming
from chatrooms.ai.base import AiBlocked, AiError, AiModel, Finish, StreamItem, TextDelta, Turn
from chatrooms.ai.context import context_fit
from chatrooms.ai.registry import get_model
from chatrooms.models import Message
from chatrooms.payloads import message_payload

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The pause before trying a database step again while PostgreSQL does not answer.
DB_RETRY_SECONDS = 1.0

_db_slots = threading.BoundedSemaphore(settings.REPLY_DB_CONNECTIONS)


@contextmanager
def db_session() -> Iterator[None]:
    """One of the process's few database slots, given back with the connection afterwards."""
    with _db_slots:
        try:
            yield
        finally:
            replies.db_connection_release()


def retry_delay(attempt: int) -> float:
    """Exponential backoff after failed attempt number `attempt`: 2 s, 4 s, 8 s... by default."""
    return float(settings.AI_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))


def db_patiently(step: Callable[[], T], *, reply_id: int) -> T:
    """Run a database step of a claimed reply, trying again while PostgreSQL does not answer.

    No other worker takes the reply while its lease lasts, so waiting that long loses
    nothing; after it, the error goes up and the task's retry claims the reply afresh. The
    steps are fenced writes and reads, so one that did land before the connection broke is
    refused, not applied twice, when tried again.
    """
    give_up_at = time.monotonic() + settings.REPLY_LEASE_SECONDS
    while True:
        try:
            with db_session():
                return step()
        except OperationalError as exc:
            if time.monotonic() >= give_up_at:
                raise
            logger.warning("Reply %s: PostgreSQL unavailable (%s); trying again", reply_id, exc)
            time.sleep(DB_RETRY_SECONDS)


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
    error_message: str = ""


@shared_task(
    bind=True,
    name="chatrooms.reply_generate",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # attempts are counted in the database, across redeliveries too
    soft_time_limit=settings.REPLY_TIME_LIMIT_SECONDS + 10,
    time_limit=settings.REPLY_TIME_LIMIT_SECONDS + 30,
)
def reply_generate(self: Task, reply_id: int) -> None:
    """Generate the reply `reply_id`. Safe to run any number of times: only a claim works."""
    try:
        delay = reply_generation_run(reply_id=reply_id)
    except OperationalError as exc:
        logger.warning("Reply %s: PostgreSQL unavailable (%s); task retried", reply_id, exc)
        raise self.retry(countdown=DB_RETRY_SECONDS) from exc
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task(name="chatrooms.replies_sweep", time_limit=60, soft_time_limit=50)
def replies_sweep() -> int:
    """Beat, every AI_PENDING_SWEEP_INTERVAL_SECONDS: enqueue the replies no worker is on."""
    return len(replies.replies_sweep())


def reply_generation_run(*, reply_id: int) -> float | None:
    """One attempt at a reply. Returns the delay before a retry, or None when done."""
    with db_session():
        claim = replies.reply_claim(reply_id=reply_id)
    if claim is None:
        logger.info("Reply %s: nothing to do (finished, or another worker has it)", reply_id)
        return None
    # Claimed: from here on, a database that does not answer is waited for (db_patiently).
    history = db_patiently(lambda: replies.reply_history(claim=claim), reply_id=reply_id)

    model = get_model()
    if claim.attempt > _max_attempts():
        # Workers keep dying on this reply (or its retries were lost): stop trying.
        outcome = Outcome(
            Ending.FAILED,
            "",
            error_code="ai_unavailable",
            error_message=f"The reply could not be generated in {_max_attempts()} attempts.",
        )
    else:
        if claim.attempt > 1:
            _publish(streaming.stream_reset_publish, reply_id=reply_id, attempt=claim.attempt)
        turns = context_fit(
            turns=history,
            budget_tokens=settings.AI_CONTEXT_TOKENS,
            count_tokens=model.count_tokens,
            system_prompt=claim.system_prompt,
        )
        outcome = _generate(model=model, claim=claim, turns=turns)

    reply, delay = db_patiently(
        lambda: _record(outcome=outcome, claim=claim, model_name=model.name), reply_id=reply_id
    )
    if reply is not None:
        _publish(streaming.stream_done_publish, reply_id=reply_id, message=message_payload(reply))
        logger.info("Reply %s: %s (attempt %s)", reply_id, reply.status, claim.attempt)
    return delay


def _max_attempts() -> int:
    return settings.AI_MAX_RETRIES + 1


def _generate(*, model: AiModel, claim: replies.Claim, turns: list[Turn]) -> Outcome:
    """Stream from the model and publish each chunk; no database connection is held."""
    parts: list[str] = []
    # Renewed only as chunks arrive, and the next one may take up to the model's timeout:
    # renew early enough that a slow chunk still lands inside the lease.
    renew_every = max(
        1.0,
        min(
            settings.REPLY_LEASE_SECONDS / 3,
            (settings.REPLY_LEASE_SECONDS - settings.GEMINI_TIMEOUT_SECONDS) / 2,
        ),
    )
    renew_at = time.monotonic() + renew_every
    deadline = time.monotonic() + settings.REPLY_TIME_LIMIT_SECONDS
    publishing = True
    try:
        with _closing(model.stream(system_prompt=claim.system_prompt, turns=turns)) as items:
            for item in items:
                if isinstance(item, Finish):
                    text = "".join(parts)
                    if not text.strip():  # whitespace alone is no answer either
                        return Outcome(
                            Ending.FAILED,
                            text,
                            error_code="empty_reply",
                            error_message="The model returned an empty reply.",
                        )
                    return Outcome(Ending.COMPLETED, text, finish=item)
                if not isinstance(item, TextDelta) or not item.text:
                    continue
                parts.append(item.text)
                if publishing:
                    try:
                        if streaming.stream_delta_publish(
                            reply_id=claim.reply_id, attempt=claim.attempt, text=item.text
                        ):
                            return Outcome(Ending.STOPPED, "".join(parts))
                    except RedisError:
                        # Keep generating: followers catch up from the database at the end.
                        logger.warning("Reply %s: cannot publish chunks", claim.reply_id)
                        publishing = False
                now = time.monotonic()
                if now >= deadline:
                    return _timed_out(parts)
                if now >= renew_at:
                    renewed = _lease_renew(claim)
                    if renewed is False:
                        return Outcome(Ending.STOPPED, "".join(parts))
                    # Not renewed (None): the database did not answer; the lease runs a while
                    # yet, so the model goes on and a later chunk tries again.
                    pause = renew_every if renewed else DB_RETRY_SECONDS
                    renew_at = time.monotonic() + pause
        # A model that ends without a Finish broke its protocol: treat it as a cut stream.
        raise AiError("The model's stream ended early.", retryable=True)
    except AiBlocked as exc:
        return Outcome(Ending.BLOCKED, "".join(parts), error_message=exc.reason)
    except AiError as exc:
        if exc.retryable and claim.attempt < _max_attempts():
            logger.warning("Reply %s attempt %s: %s", claim.reply_id, claim.attempt, exc.message)
            return Outcome(Ending.RETRY, "".join(parts))
        code = "ai_unavailable" if exc.retryable else "ai_error"
        return Outcome(Ending.FAILED, "".join(parts), error_code=code, error_message=exc.message)
    except SoftTimeLimitExceeded:
        return _timed_out(parts)
    except Exception:
        # A bug, not an outage: fail now (and give the prompt back) rather than retry it.
        logger.exception("Reply %s attempt %s crashed", claim.reply_id, claim.attempt)
        return Outcome(
            Ending.FAILED,
            "".join(parts),
            error_code="ai_error",
            error_message="The reply could not be generated.",
        )


def _lease_renew(claim: replies.Claim) -> bool | None:
    """True: renewed. False: the reply is no longer this attempt's. None: no database."""
    try:
        with db_session():
            return replies.reply_lease_renew(claim=claim)
    except OperationalError as exc:
        logger.warning(
            "Reply %s: lease not renewed, PostgreSQL unavailable (%s)", claim.reply_id, exc
        )
        return None


@contextmanager
def _closing(stream: Iterator[StreamItem]) -> Iterator[Iterator[StreamItem]]:
    """Close the model's stream when we stop reading early, so its HTTP response is freed."""
    try:
        yield stream
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _timed_out(parts: list[str]) -> Outcome:
    return Outcome(
        Ending.FAILED,
        "".join(parts),
        error_code="ai_timeout",
        error_message="The model took too long to answer.",
    )


def _record(
    *, outcome: Outcome, claim: replies.Claim, model_name: str
) -> tuple[Message | None, float | None]:
    """The fenced final write. Returns the finished reply (to announce) and any retry delay."""
    reply: Message | None = None
    text = outcome.text
    if outcome.ending is Ending.COMPLETED:
        assert outcome.finish is not None
        reply = replies.reply_complete(
            claim=claim, text=text, finish=outcome.finish, model_name=model_name
        )
    elif outcome.ending is Ending.FAILED:
        reply = replies.reply_fail(
            claim=claim,
            text=text,
            code=outcome.error_code,
            message=outcome.error_message,
            model_name=model_name,
        )
    elif outcome.ending is Ending.BLOCKED:
        reply = replies.reply_block(
            claim=claim, text=text, reason=outcome.error_message, model_name=model_name
        )
    elif outcome.ending is Ending.RETRY:
        delay = retry_delay(claim.attempt)
        if replies.reply_retry_later(claim=claim, delay_seconds=delay):
            return None, delay
    if reply is None:
        # The write was refused: canceled meanwhile (keep the text), or this attempt is stale.
        reply = replies.reply_cancel_settle(claim=claim, text=text, model_name=model_name)
        if reply is None:
            logger.info("Reply %s attempt %s lost its lease", claim.reply_id, claim.attempt)
    return reply, None


def _publish(publish: Callable[..., None], **kwargs: Any) -> None:
    """Redis being down costs the live stream only: followers fall back to the database."""
    try:
        publish(**kwargs)
    except RedisError:
        logger.warning("Could not publish to reply %s's stream", kwargs.get("reply_id"))


@shared_task(name="chatrooms.idempotency_records_prune", time_limit=300, soft_time_limit=270)
def idempotency_records_prune() -> int:
    """Beat, hourly: forget the Idempotency-Keys past their replay window; returns how many."""
    return services.idempotency_records_prune(older_than=services.idempotency_retention())
