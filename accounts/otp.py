"""One-time codes: issue them under the resend and hourly limits, and check each one once.

A code is 6 digits from `secrets`. Only an HMAC-SHA256 of it is stored, keyed with a key
derived from SECRET_KEY and bound to the phone and purpose, so a leaked table row gives
nothing usable. Only the newest code of a phone and purpose counts; sending a new one
retires the old.

Sends and wrong tries are limited per number and scope (the owner's known networks apart
from strangers, see `accounts.otp_scopes`), per client network, and for the whole service
(OTP_MAX_SENDS_PER_HOUR, the SMS bill).

A code sent by signup also gets a signup token, a random secret returned only to the caller
of signup (its SHA-256 is kept on the row). The code reaches whoever holds the phone, the
token whoever signed up; only together do they prove that the two are the same person.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.client_ip import client_network, client_network_key
from accounts.errors import (
    OtpAttemptsExceeded,
    OtpExpired,
    OtpInvalid,
    OtpLocked,
    OtpResendTooSoon,
    OtpSendingPaused,
    OtpSendLimit,
)
from accounts.locks import all_sends_lock, ip_lock, phone_lock
from accounts.metrics import otp_sends
from accounts.models import OneTimeCode
from accounts.otp_delivery import otp_deliver
from accounts.otp_scopes import otp_failure_record, otp_locked_for, otp_scope, otp_streak_end

Purpose = OneTimeCode.Purpose

CODE_DIGITS = 6
_HASH_SALT = "accounts.otp.code"
_HOUR = dt.timedelta(hours=1)


def otp_code_generate() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def otp_code_hash(*, phone: str, purpose: str, code: str) -> str:
    return salted_hmac(_HASH_SALT, f"{purpose}:{phone}:{code}", algorithm="sha256").hexdigest()


def signup_token_hash(token: str) -> str:
    # 256 random bits need no key or stretching: a plain digest cannot be reversed.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedCode:
    """What the API may say about a send. `code` is None when nothing was delivered;
    `signup_token` is set for a code sent by signup."""

    code: str | None
    expires_in: int
    signup_token: str | None = None


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _seconds_over_hourly_limit(
    sends: QuerySet[OneTimeCode], *, limit: int, now: dt.datetime
) -> int | None:
    """None while `sends` holds fewer than `limit` codes of the last hour, else the seconds
    until the oldest of them leaves the one-hour window and another send is allowed."""
    recent = list(
        sends.filter(created_at__gt=now - _HOUR)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    return _seconds_until(recent[-1] + _HOUR, now) if len(recent) >= limit else None


def _check_hourly_limit(sends: QuerySet[OneTimeCode], *, limit: int, now: dt.datetime) -> None:
    if (retry_after := _seconds_over_hourly_limit(sends, limit=limit, now=now)) is not None:
        raise OtpSendLimit(retry_after)


def _sends_from_network(client_ip: str | None) -> QuerySet[OneTimeCode]:
    """Codes requested from the client network of `client_ip` (see `accounts.client_ip`)."""
    network = client_network(client_ip)
    if network is None:
        return OneTimeCode.objects.filter(client_ip__isnull=True)
    if network.num_addresses == 1:
        return OneTimeCode.objects.filter(client_ip=str(network.network_address))
    # PostgreSQL orders inet host addresses numerically, so a range is the network.
    first, last = network.network_address, network.broadcast_address
    return OneTimeCode.objects.filter(client_ip__range=(str(first), str(last)))


def _check_send_allowed(*, phone: str, purpose: str, scope: str, client_ip: str | None) -> None:
    now = timezone.now()
    scoped = OneTimeCode.objects.filter(phone=phone, scope=scope)
    last = scoped.filter(purpose=purpose).order_by("-created_at").first()
    if last is not None:
        allowed_at = last.created_at + dt.timedelta(seconds=settings.OTP_RESEND_COOLDOWN_SECONDS)
        if allowed_at > now:
            raise OtpResendTooSoon(_seconds_until(allowed_at, now))
    if (locked_for := otp_locked_for(phone=phone, purpose=purpose, scope=scope)) is not None:
        raise OtpLocked(locked_for)  # a code that could not be checked is not worth sending
    _check_hourly_limit(scoped, limit=settings.OTP_MAX_SENDS_PER_PHONE_PER_HOUR, now=now)
    _check_hourly_limit(
        _sends_from_network(client_ip), limit=settings.OTP_MAX_SENDS_PER_IP_PER_HOUR, now=now
    )
    # Last, under a lock every send takes, so concurrent sends cannot overshoot the cap.
    all_sends_lock()
    every_send = OneTimeCode.objects.all()
    limit = settings.OTP_MAX_SENDS_PER_HOUR
    if (retry_after := _seconds_over_hourly_limit(every_send, limit=limit, now=now)) is not None:
        raise OtpSendingPaused(retry_after)


def _deliver_after_commit(*, phone: str, code: str, purpose: str) -> None:
    # A named function, not a partial: Django logs a failed callback by its __qualname__.
    def deliver_code() -> None:
        otp_deliver(phone=phone, code=code, purpose=purpose)

    # robust: a failing backend is logged, never a 500 for a send that is already stored
    # (the user can ask again after the cooldown).
    transaction.on_commit(deliver_code, robust=True)


def otp_issue(
    *,
    phone: str,
    purpose: str,
    client_ip: str | None,
    deliver: bool = True,
    from_signup: bool = False,
) -> IssuedCode:
    """Store a new code and deliver it once the transaction commits.

    Raises OtpResendTooSoon, OtpLocked, OtpSendLimit or OtpSendingPaused, with nothing
    stored, when a limit applies.
    With `deliver=False` the send is recorded and counted exactly like a real one, but the
    stored hash belongs to no 6-digit code and nothing leaves the server: forgot-password
    uses it for unknown numbers, so limits and later tries behave the same for every number.
    With `from_signup=True` the answer carries a new signup token (see the module's doc).
    """
    with transaction.atomic():
        # Serialises sends for the phone (cooldown) and the client network (hourly count).
        phone_lock(phone)
        ip_lock(client_network_key(client_ip))
        scope = otp_scope(phone=phone, client_ip=client_ip)
        _check_send_allowed(phone=phone, purpose=purpose, scope=scope, client_ip=client_ip)
        code = otp_code_generate() if deliver else None
        signup_token = secrets.token_urlsafe(32) if from_signup else None
        now = timezone.now()
        ttl = settings.OTP_TTL_SECONDS
        OneTimeCode.objects.create(
            phone=phone,
            purpose=purpose,
            scope=scope,
            code_hash=otp_code_hash(
                phone=phone, purpose=purpose, code=code or secrets.token_urlsafe(32)
            ),
            client_ip=client_ip,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl),
            from_signup=from_signup,
            signup_token_hash=signup_token_hash(signup_token) if signup_token else "",
        )
        if code is not None:
            _deliver_after_commit(phone=phone, code=code, purpose=purpose)
        transaction.on_commit(otp_sends.labels(purpose).inc)
    return IssuedCode(code=code, expires_in=ttl, signup_token=signup_token)


class OtpOutcome(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    BURNED = "burned"
    NO_ACTIVE_CODE = "no_active_code"
    LOCKED = "locked"


@dataclass(frozen=True)
class OtpCheck:
    """`signup_confirmed`: the accepted code was sent by signup, and the caller presented
    that signup's token. `wrong_guess`: a code was compared and was wrong (WRONG, or the
    try that BURNED the code). `retry_after`: seconds a LOCKED check must wait."""

    outcome: OtpOutcome
    signup_confirmed: bool = False
    wrong_guess: bool = False
    retry_after: int | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is OtpOutcome.ACCEPTED

    def raise_unless_accepted(self) -> None:
        if self.outcome is OtpOutcome.WRONG:
            raise OtpInvalid()
        if self.outcome is OtpOutcome.BURNED:
            raise OtpAttemptsExceeded()
        if self.outcome is OtpOutcome.NO_ACTIVE_CODE:
            raise OtpExpired()
        if self.outcome is OtpOutcome.LOCKED:
            raise OtpLocked(self.retry_after or 1)


def _signup_token_matches(stored_hash: str, token: str | None) -> bool:
    if not stored_hash or not token:
        return False
    return hmac.compare_digest(stored_hash, signup_token_hash(token))


def otp_consume(
    *,
    phone: str,
    purpose: str,
    code: str,
    client_ip: str | None,
    signup_token: str | None = None,
) -> OtpCheck:
    """Check `code` against the newest code of the phone and purpose, and record the try.

    Must run inside `transaction.atomic()` under the number's `phone_lock`, and the caller
    must let that transaction commit before raising (`OtpCheck.raise_unless_accepted`), or
    a wrong try would not be counted. The row is locked, so concurrent tries are counted one
    by one and a code is accepted at most once. The try that reaches OTP_MAX_ATTEMPTS wrong
    ones burns the code. While the scope of the number and `client_ip` is locked by its
    streak of wrong codes, no code is looked at (LOCKED).
    A wrong or missing `signup_token` does not make the code wrong; it only leaves
    `signup_confirmed` False.
    """
    scope = otp_scope(phone=phone, client_ip=client_ip)
    if (locked_for := otp_locked_for(phone=phone, purpose=purpose, scope=scope)) is not None:
        return OtpCheck(OtpOutcome.LOCKED, retry_after=locked_for)
    latest = (
        OneTimeCode.objects.select_for_update()
        .filter(phone=phone, purpose=purpose)
        .order_by("-created_at")
        .first()
    )
    if latest is None:
        return OtpCheck(OtpOutcome.NO_ACTIVE_CODE)
    if latest.attempts >= settings.OTP_MAX_ATTEMPTS:
        return OtpCheck(OtpOutcome.BURNED)
    now = timezone.now()
    if latest.used_at is not None or latest.expires_at <= now:
        return OtpCheck(OtpOutcome.NO_ACTIVE_CODE)
    expected = otp_code_hash(phone=phone, purpose=purpose, code=code)
    if not hmac.compare_digest(expected, latest.code_hash):
        latest.attempts += 1
        latest.save(update_fields=["attempts"])
        otp_failure_record(phone=phone, purpose=purpose, scope=scope)
        if latest.attempts >= settings.OTP_MAX_ATTEMPTS:
            return OtpCheck(OtpOutcome.BURNED, wrong_guess=True)
        return OtpCheck(OtpOutcome.WRONG, wrong_guess=True)
    latest.used_at = now
    latest.save(update_fields=["used_at"])
    otp_streak_end(phone=phone, purpose=purpose, scope=scope)
    return OtpCheck(
        OtpOutcome.ACCEPTED,
        signup_confirmed=_signup_token_matches(latest.signup_token_hash, signup_token),
    )
