"""Whose tries a number's OTP limits count: the owner's known networks apart from strangers.

Anyone who knows a phone number can ask for its codes and guess them. If every send and
every wrong guess counted against the number alone, a stranger could spend the owner's
hourly sends and lock the owner's code login at will. So they are counted per *scope*:

- a client network (an IPv4 address or an IPv6 /64, see `accounts.client_ip`) from which
  the number's account logged in before is a scope of its own, named by the network;
- every other network shares one scope, OTHER_NETWORKS.

The resend cooldown, the per-phone hourly send limit and the streak of wrong codes are each
counted per number and scope. A stranger exhausts only the strangers' budget; the owner,
back on a network they logged in from, still has theirs. The price: a number that never
logged in (a first login) has only the strangers' scope, and the total guesses a number can
take grow with its known networks (at most KNOWN_NETWORKS_KEPT of them, each bounded).

The streak: each wrong code adds one, a right code ends it. At OTP_MAX_CONSECUTIVE_FAILURES
(NIST SP 800-63B allows at most 100) code checks and sends for that number, purpose and
scope are refused for OTP_LOCKOUT_SECONDS after the last wrong code. The streak is not
reset by the wait: each wrong code after it locks again at once, so a patient guesser gets
one guess per lockout. A streak with no wrong code for STREAK_FORGOTTEN_AFTER is purged.
"""

from __future__ import annotations

import datetime as dt
import math

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from accounts.client_ip import UNKNOWN_CLIENT, client_network_key
from accounts.models import KnownNetwork, OtpFailureStreak, User

OTHER_NETWORKS = "other"
KNOWN_NETWORKS_KEPT = 20
STREAK_FORGOTTEN_AFTER = dt.timedelta(days=30)


def otp_scope(*, phone: str, client_ip: str | None) -> str:
    """The scope a send or a try for `phone` from `client_ip` is counted in."""
    network = client_network_key(client_ip)
    if network == UNKNOWN_CLIENT:
        return OTHER_NETWORKS
    known = KnownNetwork.objects.filter(user__phone=phone, network=network).exists()
    return network if known else OTHER_NETWORKS


def known_network_remember(*, user: User, client_ip: str | None) -> None:
    """Record that `user` logged in from the network of `client_ip`; only the
    KNOWN_NETWORKS_KEPT most recent are kept."""
    network = client_network_key(client_ip)
    if network == UNKNOWN_CLIENT:
        return
    KnownNetwork.objects.bulk_create(
        [KnownNetwork(user=user, network=network, last_login_at=timezone.now())],
        update_conflicts=True,
        unique_fields=["user", "network"],
        update_fields=["last_login_at"],
    )
    newest = KnownNetwork.objects.filter(user=user).order_by("-last_login_at", "-pk")
    kept = newest.values("pk")[:KNOWN_NETWORKS_KEPT]
    KnownNetwork.objects.filter(user=user).exclude(pk__in=kept).delete()


def otp_locked_for(*, phone: str, purpose: str, scope: str) -> int | None:
    """Seconds until code checks for the number, purpose and scope are allowed again, or
    None when they are not locked. Call under the number's lock (`accounts.locks`)."""
    streak = OtpFailureStreak.objects.filter(phone=phone, purpose=purpose, scope=scope).first()
    if streak is None or streak.failures < settings.OTP_MAX_CONSECUTIVE_FAILURES:
        return None
    unlocks_at = streak.last_failure_at + dt.timedelta(seconds=settings.OTP_LOCKOUT_SECONDS)
    remaining = (unlocks_at - timezone.now()).total_seconds()
    return max(1, math.ceil(remaining)) if remaining > 0 else None


def otp_failure_record(*, phone: str, purpose: str, scope: str) -> None:
    """One more wrong code in the streak. Call under the number's lock."""
    now = timezone.now()
    streaks = OtpFailureStreak.objects.filter(phone=phone, purpose=purpose, scope=scope)
    if not streaks.update(failures=F("failures") + 1, last_failure_at=now):
        OtpFailureStreak.objects.create(
            phone=phone, purpose=purpose, scope=scope, failures=1, last_failure_at=now
        )


def otp_streak_end(*, phone: str, purpose: str, scope: str) -> None:
    """A right code: the wrong ones before it no longer count."""
    OtpFailureStreak.objects.filter(phone=phone, purpose=purpose, scope=scope).delete()
