"""Brute-force protection of password login.

Wrong passwords are counted per phone number and per client network (an IPv4 address or an
IPv6 /64, see `accounts.client_ip`) in fixed clock-hour windows, in Redis through Django's
cache. An attempt takes a slot in both counters before the password is checked, so parallel
guesses cannot slip past a limit, and gives the slots back when the password is right. A full
counter refuses the attempt with LoginAttemptsExceeded before the password is looked at, so a
locked number does not tell whether a guess was right. The phone counter works alike for
numbers with and without an account.

When Redis is down the limits are skipped with a warning (fail open): password login keeps
working, and the hasher's cost still bounds how fast anyone can guess.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from accounts.client_ip import client_network_key
from accounts.errors import LoginAttemptsExceeded

logger = logging.getLogger(__name__)
T = TypeVar("T")

_WINDOW_SECONDS = 3600
# Keys outlive their window a little, so an attempt that started just before the hour can
# still give its slot back.
_KEY_GRACE_SECONDS = 60


@dataclass(frozen=True)
class _Slot:
    key: str


@dataclass(frozen=True)
class LoginAttempt:
    """The counter slots one attempt took; `phone_key` is the phone counter of its window."""

    slots: tuple[_Slot, ...]
    phone_key: str

    def release(self) -> None:
        """The password was right: this attempt was not a failure."""
        for slot in self.slots:
            _redis(functools.partial(_decrement, slot.key))

    def clear_phone_failures(self) -> None:
        """The login succeeded: earlier wrong passwords for this number no longer count."""
        _redis(functools.partial(cache.delete, self.phone_key))


def _decrement(key: str) -> None:
    # ValueError: the window's key has expired, so there is nothing left to give back.
    with contextlib.suppress(ValueError):
        cache.decr(key)


def _redis(action: Callable[[], T]) -> T | None:
    """`action()`, or None with a warning when Redis fails and the cache lets it raise."""
    try:
        return action()
    except RedisError as exc:
        logger.warning("Login attempt counters unavailable, not enforced: %r", exc)
        return None


def _take_slot(key: str, *, timeout: int) -> int | None:
    """The counter's value with this attempt, or None when Redis cannot be reached."""

    def increment() -> int | None:
        cache.add(key, 0, timeout=timeout)
        try:
            count: int | None = cache.incr(key)
        except ValueError:  # expired between add and incr: this attempt starts it afresh
            cache.add(key, 1, timeout=timeout)
            return 1
        return count

    count = _redis(increment)
    if count is None:
        # Connection errors are swallowed by the cache (IGNORE_EXCEPTIONS), which returns None.
        logger.warning("Login attempt counter %s unavailable, not enforced.", key)
        return None
    return count


def login_attempt_begin(*, phone: str, client_ip: str | None) -> LoginAttempt:
    """Take a slot in the number's and the client network's counters of the current hour.

    Raises LoginAttemptsExceeded (429, retry at the top of the hour) when either counter
    already holds its limit of failures; the refused attempt takes nothing.
    """
    now = time.time()
    window = int(now // _WINDOW_SECONDS)
    retry_after = max(1, math.ceil((window + 1) * _WINDOW_SECONDS - now))
    timeout = retry_after + _KEY_GRACE_SECONDS
    phone_key = f"accounts:login-failures:{window}:phone:{phone}"
    network_key = f"accounts:login-failures:{window}:ip:{client_network_key(client_ip)}"
    limits = (
        (network_key, settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR),
        (phone_key, settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR),
    )
    taken: list[_Slot] = []
    for key, limit in limits:
        count = _take_slot(key, timeout=timeout)
        if count is None:
            continue
        taken.append(_Slot(key))
        if count > limit:
            LoginAttempt(slots=tuple(taken), phone_key=phone_key).release()
            raise LoginAttemptsExceeded(retry_after)
    return LoginAttempt(slots=tuple(taken), phone_key=phone_key)
