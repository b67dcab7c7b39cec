"""PostgreSQL advisory locks that serialise the work done for one phone number or one IP."""

from __future__ import annotations

from django.db import connection

# First key of the two-key advisory lock form, so our locks never meet another app's.
_PHONE_NAMESPACE = 4101
_IP_NAMESPACE = 4102
_ALL_SENDS_NAMESPACE = 4103


def _lock(namespace: int, key: str) -> None:
    if not connection.in_atomic_block:
        # In autocommit the lock would be released as soon as it is taken.
        raise RuntimeError("Advisory locks must be taken inside transaction.atomic().")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [namespace, key])


def phone_lock(phone: str) -> None:
    """Held until the current transaction ends. Take it before an IP lock, never after."""
    _lock(_PHONE_NAMESPACE, phone)


def ip_lock(ip: str) -> None:
    _lock(_IP_NAMESPACE, ip)


def all_sends_lock() -> None:
    """One lock for every code send, for the service-wide hourly cap. Take it last."""
    _lock(_ALL_SENDS_NAMESPACE, "otp-sends")
