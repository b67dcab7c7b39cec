"""`Idempotency-Key` for sends: the first committed answer to a key is replayed for its retries.

The view wraps its call in `idempotent`: the key is claimed first, in the same transaction as
the send, so a concurrent retry waits on the unique index until the first commits, then
replays what it stored — the rendered bytes and headers, so a replay is byte for byte the
first answer (same ids), counted once. Errors roll everything back, the key included, so a
retry after an error is evaluated afresh. After IDEMPOTENCY_KEY_RETENTION_SECONDS a key is
forgotten and its reuse is a new send.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from chatrooms.errors import IdempotencyKeyBusy, IdempotencyKeyMismatch
from chatrooms.models import IdempotencyRecord


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as stored for replays: status, headers and the rendered body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


class _KeyTaken(Exception):
    """Another request with the same key committed first."""


def request_fingerprint(*parts: object) -> str:
    """What makes two requests "the same" for a key: a hash of their meaningful fields."""
    canonical = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent(
    *, user: User, key: str | None, fingerprint: str, produce: Callable[[], Answer]
) -> Answer:
    """`produce()`'s answer, run in one transaction with the key's claim; or, for a key that
    already answered, that answer again. Raises IdempotencyKeyMismatch for a key used with
    another request."""
    if key is None:
        return produce()
    for _attempt in range(2):
        try:
            with transaction.atomic():
                record = _claim(user=user, key=key, fingerprint=fingerprint)
                answer = produce()
                record.response_status = answer.status
                record.response_headers = answer.headers
                record.response_body = answer.body.decode()
                record.save(update_fields=["response_status", "response_headers", "response_body"])
                return answer
        except _KeyTaken:
            replay = _replay(user=user, key=key, fingerprint=fingerprint)
            if replay is not None:
                return replay
            # The record vanished between the conflict and the read (pruned), or was past the
            # replay window and has just been deleted: send anew.
    raise IdempotencyKeyBusy()


def _claim(*, user: User, key: str, fingerprint: str) -> IdempotencyRecord:
    try:
        # No savepoint: a taken key aborts the whole transaction, which is rolled back anyway.
        return IdempotencyRecord.objects.create(
            user=user, key=key, request_hash=fingerprint, response_status=0, response_body=""
        )
    except IntegrityError as exc:
        raise _KeyTaken from exc


def _replay(*, user: User, key: str, fingerprint: str) -> Answer | None:
    record = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if record is None:
        return None
    if record.created_at < timezone.now() - idempotency_retention():
        # Past the replay window the key counts as absent, even before the prune removes it:
        # delete it (a concurrent retry may have already) so the next claim succeeds.
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return None
    if record.request_hash != fingerprint:
        raise IdempotencyKeyMismatch()
    return Answer(
        status=record.response_status,
        body=record.response_body.encode(),
        headers=dict(record.response_headers),
        replayed=True,
    )


def idempotency_retention() -> dt.timedelta:
    """How long an Idempotency-Key is replayed: IDEMPOTENCY_KEY_RETENTION_SECONDS."""
    return dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION_SECONDS)


def idempotency_records_prune(*, older_than: dt.timedelta | None = None) -> int:
    """Forget keys older than `older_than` (default: the replay window); returns how many."""
    cutoff = timezone.now() - (older_than or idempotency_retention())
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
