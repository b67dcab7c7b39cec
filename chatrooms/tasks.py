"""Celery's side of the reply pipeline: the tasks, and the one way to enqueue a reply.

The work itself is `chatrooms.replies`; these functions only adapt it to Celery (retries,
time limits, the beat schedule's task names).
"""

from __future__ import annotations

import logging
from functools import partial

from celery import Task, shared_task
from django.conf import settings
from django.db import OperationalError, transaction

from chatrooms import idempotency, replies
from core.db import DB_RETRY_SECONDS
from core.task_publish import task_publish

logger = logging.getLogger(__name__)


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
    """Generate the reply `reply_id` (one attempt; a retry after a backoff if it asks)."""
    try:
        delay = replies.reply_attempt(reply_id=reply_id)
    except OperationalError as exc:
        logger.warning("Reply %s: PostgreSQL unavailable (%s); task retried", reply_id, exc)
        raise self.retry(countdown=DB_RETRY_SECONDS) from exc
    if delay is not None:
        raise self.retry(countdown=delay)


def reply_enqueue(*, reply_id: int) -> None:
    """Queue the generation of a reply. A broker that is down loses nothing: the reply stays
    `pending` and the sweep enqueues it again."""
    try:
        task_publish(reply_generate, reply_id)
    except Exception:
        logger.exception("Could not enqueue the reply %s; the sweep will retry it", reply_id)


def reply_enqueue_on_commit(*, reply_id: int) -> None:
    transaction.on_commit(partial(reply_enqueue, reply_id=reply_id))


def replies_sweep_enqueue(*, older_than_seconds: int | None = None) -> list[int]:
    """Enqueue again the replies no worker is on (`replies.replies_sweep`); their ids."""
    reply_ids = replies.replies_sweep(older_than_seconds=older_than_seconds)
    for reply_id in reply_ids:
        reply_enqueue(reply_id=reply_id)
    return reply_ids


@shared_task(name="chatrooms.replies_sweep", time_limit=60, soft_time_limit=50)
def replies_sweep() -> int:
    """Beat, every AI_PENDING_SWEEP_INTERVAL_SECONDS: enqueue the replies no worker is on."""
    return len(replies_sweep_enqueue())


@shared_task(name="chatrooms.idempotency_records_prune", time_limit=300, soft_time_limit=270)
def idempotency_records_prune() -> int:
    """Beat, hourly: forget the Idempotency-Keys past their replay window; returns how many."""
    return idempotency.idempotency_records_prune()
