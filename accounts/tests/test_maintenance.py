"""Purging old one-time codes and login failure counters: the services, the hourly beat tasks
and the operator commands."""

from __future__ import annotations

import datetime as dt
import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.maintenance import (
    login_failures_purge,
    otp_codes_purge,
    otp_failure_streaks_purge,
    refresh_tokens_flush,
)
from accounts.models import (
    LoginFailureCount,
    OneTimeCode,
    OtpFailureStreak,
    RefreshTokenFamilyMember,
)
from accounts.tasks import login_failures_purge as login_failures_purge_task
from accounts.tasks import otp_codes_purge as otp_codes_purge_task
from accounts.tasks import refresh_tokens_flush as refresh_tokens_flush_task
from accounts.tests.factories import DEFAULT_PASSWORD
from accounts.tests.helpers import login_with_password, post, send_code
from gemini_clone.celery import app as celery_app

pytestmark = pytest.mark.django_db

HOUR = 3600


def _phone(n: int) -> str:
    return f"+9198765{n:05d}"


def _send(client, n: int) -> None:
    response = send_code(client, _phone(n))
    assert response.status_code == 200, response.json()


def _phones_with_codes() -> set[str]:
    return {str(phone) for phone in OneTimeCode.objects.values_list("phone", flat=True)}


def test_the_purge_deletes_codes_past_the_retention_and_keeps_the_rest(api_client, clock, settings):
    settings.OTP_RETENTION_SECONDS = 24 * HOUR
    _send(api_client, 1)
    clock.shift(2 * HOUR)
    _send(api_client, 2)
    clock.shift(22 * HOUR + 1)  # the first code is now 24 h 1 s old, the second 22 h 1 s

    assert otp_codes_purge() == 1
    assert _phones_with_codes() == {_phone(2)}
    assert otp_codes_purge() == 0


def test_an_explicit_age_overrides_the_setting(api_client, clock):
    _send(api_client, 1)
    clock.shift(3 * HOUR)
    _send(api_client, 2)
    clock.shift(HOUR + 30 * 60)

    assert otp_codes_purge(older_than=dt.timedelta(hours=2)) == 1
    assert _phones_with_codes() == {_phone(2)}


def test_an_age_under_an_hour_is_raised_to_an_hour(api_client, clock, caplog):
    _send(api_client, 1)
    clock.shift(HOUR + 1)
    _send(api_client, 2)
    clock.shift(30 * 60)

    with caplog.at_level(logging.WARNING, logger="accounts.maintenance"):
        deleted = otp_codes_purge(older_than=dt.timedelta(0))
    # Only the code older than an hour went; the 30-minute-old one is still counted.
    assert deleted == 1
    assert _phones_with_codes() == {_phone(2)}
    assert "too short" in caplog.text


def test_the_hourly_send_limit_still_holds_after_a_purge(api_client, clock):
    phone = _phone(7)
    for _ in range(5):
        assert send_code(api_client, phone).status_code == 200
        clock.shift(61)

    # The most eager purge possible must not forget this hour's sends.
    assert otp_codes_purge(older_than=dt.timedelta(0)) == 0
    refused = send_code(api_client, phone)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "otp_send_limit"

    # Once the first send leaves the hour, the limit frees up, purge or not.
    clock.shift(HOUR - 5 * 61)
    otp_codes_purge(older_than=dt.timedelta(0))
    assert send_code(api_client, phone).status_code == 200


def test_a_code_just_sent_still_logs_in_after_a_purge(api_client, clock):
    code = send_code(api_client, _phone(1)).json()["otp"]
    clock.shift(4 * 60)
    otp_codes_purge(older_than=dt.timedelta(0))
    verified = post(api_client, "/api/auth/verify-otp", {"phone": _phone(1), "otp": code})
    assert verified.status_code == 200
    assert verified.json()["created"] is True


def test_a_large_backlog_is_deleted_in_small_batches(api_client, clock):
    for n in range(5):
        _send(api_client, n)
    clock.shift(25 * HOUR)
    _send(api_client, 99)

    with CaptureQueriesContext(connection) as queries:
        assert otp_codes_purge(batch_size=2) == 5
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1
    assert _phones_with_codes() == {_phone(99)}


def test_the_command_prints_how_many_codes_it_deleted(api_client, clock, settings):
    settings.OTP_RETENTION_SECONDS = 24 * HOUR
    _send(api_client, 1)
    _send(api_client, 2)
    clock.shift(3 * HOUR)
    _send(api_client, 3)
    clock.shift(HOUR)

    out = StringIO()
    call_command("otp_codes_purge", stdout=out)
    assert out.getvalue().strip() == "Deleted 0 one-time codes."

    out = StringIO()
    call_command("otp_codes_purge", "--older-than-hours", "2", stdout=out)
    assert out.getvalue().strip() == "Deleted 2 one-time codes."
    assert _phones_with_codes() == {_phone(3)}


@pytest.mark.parametrize("hours", ["0", "-3", "two"])
def test_the_command_refuses_an_age_under_an_hour(api_client, hours):
    _send(api_client, 1)
    with pytest.raises(CommandError, match="older-than-hours"):
        call_command("otp_codes_purge", "--older-than-hours", hours, stdout=StringIO())
    assert OneTimeCode.objects.count() == 1


def test_the_beat_task_purges_with_the_configured_retention(api_client, clock, settings):
    settings.OTP_RETENTION_SECONDS = 2 * HOUR
    _send(api_client, 1)
    clock.shift(HOUR)
    _send(api_client, 2)
    clock.shift(HOUR + 1)

    assert otp_codes_purge_task.apply().get() == 1
    assert _phones_with_codes() == {_phone(2)}
    assert otp_codes_purge_task.time_limit is not None


def test_every_beat_entry_names_a_registered_task():
    celery_app.loader.import_default_modules()
    schedule = celery_app.conf.beat_schedule
    assert {
        "accounts.otp_codes_purge",
        "accounts.login_failures_purge",
        "accounts.refresh_tokens_flush",
        "chatrooms.idempotency_records_prune",
    } <= {entry["task"] for entry in schedule.values()}
    for name, entry in schedule.items():
        assert entry["task"] in celery_app.tasks, f"beat entry {name!r} names an unknown task"
    assert schedule["otp-codes-purge"]["schedule"] == HOUR
    assert schedule["login-failures-purge"]["schedule"] == HOUR
    assert schedule["refresh-tokens-flush"]["schedule"] == HOUR


# --- Login failure counters ----------------------------------------------------------------


def _fail_login(client, n: int) -> None:
    response = post(client, "/api/auth/login", {"phone": _phone(n), "password": "Wrong-pass-9"})
    assert response.json()["error"]["code"] == "invalid_credentials"


def _counted_keys() -> set[str]:
    return set(LoginFailureCount.objects.values_list("key", flat=True))


def test_the_purge_deletes_the_counters_of_hours_before_the_previous_one(api_client, clock):
    clock.shift(15 * 60)  # 10:15
    _fail_login(api_client, 1)
    clock.shift(HOUR)  # 11:15
    _fail_login(api_client, 2)
    clock.shift(HOUR)  # 12:15: 10:00 is gone, 11:00 stays a little longer

    assert login_failures_purge_task.apply().get() == 2  # 10:00: number 1 and the network
    assert f"phone:{_phone(1)}" not in _counted_keys()
    assert f"phone:{_phone(2)}" in _counted_keys()
    assert login_failures_purge(batch_size=1) == 0
    assert login_failures_purge_task.time_limit is not None


def test_the_login_limit_holds_after_the_most_eager_purge(api_client, clock, settings):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 2
    _fail_login(api_client, 1)
    _fail_login(api_client, 1)
    login_failures_purge()
    refused = post(api_client, "/api/auth/login", {"phone": _phone(1), "password": "Wrong-pass-9"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "login_attempts_exceeded"


def test_the_login_failures_command_prints_how_many_it_deleted(api_client, clock):
    _fail_login(api_client, 1)
    clock.shift(2 * HOUR)
    out = StringIO()
    call_command("login_failures_purge", stdout=out)
    # The number's counter and the client network's.
    assert out.getvalue().strip() == "Deleted 2 login failure counters."
    assert not LoginFailureCount.objects.exists()


def test_streaks_of_wrong_codes_are_forgotten_after_thirty_days_without_one(api_client, clock):
    for n in (1, 2):
        code = send_code(api_client, _phone(n)).json()["otp"]
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        post(api_client, "/api/auth/verify-otp", {"phone": _phone(n), "otp": wrong})
        clock.shift(dt.timedelta(days=15))
    clock.shift(1)  # number 1's wrong code: 30 days and a second ago
    assert otp_failure_streaks_purge(batch_size=1) == 1
    assert {str(s.phone) for s in OtpFailureStreak.objects.all()} == {_phone(2)}
    # The hourly task of the login counters does it too.
    clock.shift(dt.timedelta(days=15))
    assert login_failures_purge_task.apply().get() >= 1
    assert not OtpFailureStreak.objects.exists()


# --- Expired refresh tokens ----------------------------------------------------------------


def _refresh(client, token):
    return post(client, "/api/auth/token/refresh", {"refresh": token})


def test_the_flush_deletes_expired_refresh_tokens_with_their_blacklist_and_family_rows(
    api_client, user, clock, settings
):
    lifetime = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
    old = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    rotated = _refresh(api_client, old["refresh"])  # blacklists the first token
    assert rotated.status_code == 200
    clock.shift(HOUR)
    live = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    clock.shift(lifetime - dt.timedelta(seconds=HOUR - 1))  # the first two are now expired
    assert OutstandingToken.objects.count() == 3

    assert refresh_tokens_flush_task.apply().get() == 2
    [kept] = OutstandingToken.objects.all()
    assert kept.token == live["refresh"]
    assert not BlacklistedToken.objects.exists()
    assert list(RefreshTokenFamilyMember.objects.values_list("token", flat=True)) == [kept.pk]
    assert refresh_tokens_flush(batch_size=1) == 0
    assert refresh_tokens_flush_task.time_limit is not None
    # The unexpired token still works, and the expired ones are still refused.
    assert _refresh(api_client, live["refresh"]).status_code == 200
    assert _refresh(api_client, rotated.json()["refresh"]).status_code == 401


def test_the_flush_deletes_in_batches(api_client, user, clock, settings):
    for _ in range(3):
        login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    clock.shift(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"])
    assert refresh_tokens_flush(batch_size=2) == 3
    assert not OutstandingToken.objects.exists()
    assert not RefreshTokenFamilyMember.objects.exists()
