"""Housekeeping of accounts data that would otherwise grow forever: old one-time codes, the
login failure counters of past hours, forgotten streaks of wrong codes and expired refresh
token records."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import LoginFailureCount, OneTimeCode, OtpFailureStreak
from accounts.otp_scopes import STREAK_FORGOTTEN_AFTER

logger = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 1000
# The send limits count the codes of the last hour (accounts.otp), so that hour must stay.
OTP_MIN_RETENTION = dt.timedelta(hours=1)


def otp_retention_default() -> dt.timedelta:
    return dt.timedelta(seconds=settings.OTP_RETENTION_SECONDS)


def otp_retention_floor() -> dt.timedelta:
    """The youngest age a code may be deleted at without changing any answer about it."""
    return max(
        OTP_MIN_RETENTION,
        dt.timedelta(seconds=settings.OTP_TTL_SECONDS),
        dt.timedelta(seconds=settings.OTP_RESEND_COOLDOWN_SECONDS),
    )


def otp_codes_purge(
    *, older_than: dt.timedelta | None = None, batch_size: int = PURGE_BATCH_SIZE
) -> int:
    """Delete the one-time codes created more than `older_than` ago; returns how many.

    `older_than` defaults to OTP_RETENTION_SECONDS (24 h). An age under one hour is raised to
    one hour, with a warning, and so is one under the code lifetime or the resend cooldown:
    the codes are also the send log, and the hourly send limits, the resend cooldown and
    verification read the recent ones. A code deleted after that is long expired; a try
    against it answers `otp_expired` (even if it was burned by wrong tries).

    Deletes in batches of `batch_size`, each its own short statement, so a large backlog
    never holds locks on many rows at once and concurrent sends are not held up.
    """
    requested = otp_retention_default() if older_than is None else older_than
    floor = otp_retention_floor()
    if requested < floor:
        logger.warning(
            "OTP retention of %s is too short for the send limits; keeping %s instead",
            requested,
            floor,
        )
    cutoff = timezone.now() - max(requested, floor)
    deleted = _delete_in_batches(
        OneTimeCode.objects.filter(created_at__lt=cutoff), batch_size=batch_size
    )
    if deleted:
        logger.info("Purged %s one-time codes created before %s", deleted, cutoff.isoformat())
    return deleted


def login_failures_purge(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete the login failure counters of the hours before the previous one; returns how
    many. Limits read only the current hour; the previous one stays, so an attempt that
    began just before the hour can still give its slot back."""
    hour_start = timezone.now().replace(minute=0, second=0, microsecond=0)
    cutoff = hour_start - dt.timedelta(hours=1)
    deleted = _delete_in_batches(
        LoginFailureCount.objects.filter(window_start__lt=cutoff), batch_size=batch_size
    )
    if deleted:
        logger.info("Purged %s login failure counters of hours before %s", deleted, cutoff)
    return deleted


def otp_failure_streaks_purge(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete the streaks of wrong codes whose last wrong code is older than
    STREAK_FORGOTTEN_AFTER (30 days); returns how many. Such a number starts from zero."""
    cutoff = timezone.now() - STREAK_FORGOTTEN_AFTER
    deleted = _delete_in_batches(
        OtpFailureStreak.objects.filter(last_failure_at__lt=cutoff), batch_size=batch_size
    )
    if deleted:
        logger.info("Purged %s streaks of wrong codes older than %s", deleted, cutoff)
    return deleted


def refresh_tokens_flush(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete the records of expired refresh tokens (simplejwt's `flushexpiredtokens`, in
    batches); returns how many tokens. Their blacklist entries and family rows go with them:
    an expired token is refused by its signature's expiry alone."""
    deleted = _delete_in_batches(
        OutstandingToken.objects.filter(expires_at__lte=timezone.now()),
        batch_size=batch_size,
    )
    if deleted:
        logger.info("Flushed %s expired refresh tokens", deleted)
    return deleted


def _delete_in_batches(rows: QuerySet[Any], *, batch_size: int) -> int:
    """Delete `rows` in batches, each its own short statement, so a large backlog never
    holds locks on many rows at once."""
    deleted = 0
    while True:
        # Ordered by id: the oldest rows come first in the primary key index, so each batch
        # is found without reading the whole table.
        ids = list(rows.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        # Counted without the rows deleted with them (a token's blacklist entry).
        _, per_model = rows.model.objects.filter(pk__in=ids).delete()
        deleted += per_model.get(rows.model._meta.label, 0)
        if len(ids) < batch_size:
            break
    return deleted
