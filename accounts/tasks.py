"""Celery tasks of accounts: periodic housekeeping."""

from __future__ import annotations

from celery import shared_task

from accounts.maintenance import login_failures_purge as login_failures_purge_service
from accounts.maintenance import otp_codes_purge as otp_codes_purge_service
from accounts.maintenance import otp_failure_streaks_purge
from accounts.maintenance import refresh_tokens_flush as refresh_tokens_flush_service


@shared_task(name="accounts.otp_codes_purge", time_limit=300, soft_time_limit=270)
def otp_codes_purge() -> int:
    """Beat, hourly: delete the codes older than OTP_RETENTION_SECONDS; returns how many."""
    return otp_codes_purge_service()


@shared_task(name="accounts.login_failures_purge", time_limit=300, soft_time_limit=270)
def login_failures_purge() -> int:
    """Beat, hourly: delete the login failure counters of past hours and the streaks of wrong
    codes no longer counted; returns how many."""
    return login_failures_purge_service() + otp_failure_streaks_purge()


@shared_task(name="accounts.refresh_tokens_flush", time_limit=300, soft_time_limit=270)
def refresh_tokens_flush() -> int:
    """Beat, hourly: delete the records of expired refresh tokens; returns how many."""
    return refresh_tokens_flush_service()
