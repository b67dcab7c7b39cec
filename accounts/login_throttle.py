"""Brute-force protection of password login, and of code checks from one client network.

Wrong passwords are counted per phone number and per client network (an IPv4 address or an
IPv6 /64, see `accounts.client_ip`) in fixed clock-hour windows, in PostgreSQL
(`LoginFailureCount`): a limit that lived in Redis was gone while Redis was down or after it
restarted empty. An attempt takes a slot in both counters before the password is checked,
so parallel guesses cannot slip past a limit, and gives them back when the password is
right. A full counter refuses the attempt with LoginAttemptsExceeded before the password is
looked at, so a locked number does not tell whether a guess was right. The phone counter
works alike for numbers with and without an account.

Fixed windows, not a sliding one: one row per key and hour, so an attacker varying numbers
grows the table by one row per guess at most and the purge is a range delete; and every
refusal can say exactly when it ends (the top of the hour). The price is that a burst
straddling the hour can get up to twice the limit, which the hasher's cost still bounds.

Wrong codes (verify-otp, reset-password) are counted the same way per client network
(`otp_try_begin`), so one client cannot spread guesses over many numbers; the per-number
limits of codes are in `accounts.otp` and `accounts.otp_scopes`.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from accounts.client_ip import client_network_key
from accounts.errors import LoginAttemptsExceeded, OtpNetworkAttemptsExceeded
from accounts.models import LoginFailureCount

WINDOW_SECONDS = 3600

_TABLE = LoginFailureCount._meta.db_table

# One statement for both counters. Each row only grows while it is under its own limit; the
# row lock and the re-check of the WHERE on the newest row version make concurrent attempts
# count one by one. Rows are locked network key first ("network:" sorts before "phone:"),
# here and in _GIVE_BACK_SQL, so two statements never wait for each other in a circle.
_TAKE_SQL = f"""
    INSERT INTO {_TABLE} (key, window_start, count)
    VALUES (%(network)s, %(window)s, 1), (%(phone)s, %(window)s, 1)
    ON CONFLICT (key, window_start) DO UPDATE SET count = {_TABLE}.count + 1
    WHERE {_TABLE}.count < CASE
        WHEN {_TABLE}.key = %(network)s THEN %(network_limit)s ELSE %(phone_limit)s END
"""  # noqa: S608 (the table name is ours, the values are parameters)

_TAKE_ONE_SQL = f"""
    INSERT INTO {_TABLE} (key, window_start, count) VALUES (%(key)s, %(window)s, 1)
    ON CONFLICT (key, window_start) DO UPDATE SET count = {_TABLE}.count + 1
    WHERE {_TABLE}.count < %(limit)s
"""  # noqa: S608

# Gives back one slot of each of `keys`, and empties the counters of `cleared`.
_GIVE_BACK_SQL = f"""
    UPDATE {_TABLE} SET count = CASE WHEN key = ANY(%(cleared)s) THEN 0 ELSE count - 1 END
    WHERE count > 0 AND id IN (
        SELECT id FROM {_TABLE}
        WHERE window_start = %(window)s AND key = ANY(%(keys)s)
        ORDER BY key
        FOR UPDATE
    )
"""  # noqa: S608


@dataclass(frozen=True)
class LoginAttempt:
    """The counter slots one attempt took, in the window it started in."""

    window_start: dt.datetime
    network_key: str
    phone_key: str

    def release(self) -> None:
        """The password was right: this attempt was not a failure."""
        self._give_back(cleared=[])

    def succeed(self) -> None:
        """The login succeeded: this attempt was not a failure, and the earlier wrong
        passwords for this number no longer count."""
        self._give_back(cleared=[self.phone_key])

    def _give_back(self, *, cleared: list[str]) -> None:
        _give_back(self.window_start, keys=[self.network_key, self.phone_key], cleared=cleared)


@dataclass(frozen=True)
class OtpTry:
    """The slot one code check took in its client network's counter."""

    window_start: dt.datetime
    network_key: str

    def release(self) -> None:
        """The code was not a wrong guess (right, or no code was checked)."""
        _give_back(self.window_start, keys=[self.network_key], cleared=[])


def _give_back(window_start: dt.datetime, *, keys: list[str], cleared: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_GIVE_BACK_SQL, {"window": window_start, "keys": keys, "cleared": cleared})


def _current_window() -> tuple[dt.datetime, int]:
    """The start of the current clock hour, and the seconds until the next one."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    return dt.datetime.fromtimestamp(window * WINDOW_SECONDS, tz=dt.UTC), retry_after


def otp_try_begin(*, client_ip: str | None) -> OtpTry:
    """Take a slot in the client network's counter of wrong codes for this hour, committed
    at once so a wrong try stays counted whatever happens next.

    Raises OtpNetworkAttemptsExceeded (429, retry at the top of the hour) when the counter
    holds OTP_MAX_FAILURES_PER_IP_PER_HOUR; the code is then not looked at.
    """
    window_start, retry_after = _current_window()
    slot = OtpTry(window_start, f"otp-network:{client_network_key(client_ip)}")
    limit = settings.OTP_MAX_FAILURES_PER_IP_PER_HOUR
    if limit <= 0:
        raise OtpNetworkAttemptsExceeded(retry_after)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _TAKE_ONE_SQL, {"key": slot.network_key, "window": window_start, "limit": limit}
        )
        if cursor.rowcount < 1:
            raise OtpNetworkAttemptsExceeded(retry_after)
    return slot


def login_attempt_begin(*, phone: str, client_ip: str | None) -> LoginAttempt:
    """Take a slot in the number's and the client network's counters of the current hour.

    Raises LoginAttemptsExceeded (429, retry at the top of the hour) when either counter
    already holds its limit of failures; the refused attempt takes nothing.
    """
    window_start, retry_after = _current_window()
    attempt = LoginAttempt(
        window_start=window_start,
        network_key=f"network:{client_network_key(client_ip)}",
        phone_key=f"phone:{phone}",
    )
    network_limit = settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR
    phone_limit = settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR
    if min(network_limit, phone_limit) <= 0:
        raise LoginAttemptsExceeded(retry_after)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _TAKE_SQL,
            {
                "network": attempt.network_key,
                "phone": attempt.phone_key,
                "window": attempt.window_start,
                "network_limit": network_limit,
                "phone_limit": phone_limit,
            },
        )
        if cursor.rowcount < 2:
            # A full counter: raising rolls back the slot taken in the other one.
            raise LoginAttemptsExceeded(retry_after)
    return attempt
