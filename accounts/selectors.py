"""Reads of accounts."""

from __future__ import annotations

from accounts.models import User


def user_get_by_phone(*, phone: str) -> User | None:
    """The account of an E.164 number, or None."""
    return User.objects.filter(phone=phone).first()
