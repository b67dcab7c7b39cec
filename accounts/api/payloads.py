"""Plain-dict renderings of the account endpoints' answers."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from accounts.models import User
from accounts.otp import IssuedCode
from core.timestamps import iso_utc
from usage.selectors import usage_summary


def user_payload(user: User) -> dict[str, Any]:
    """The `user` object. An unset name or email is null, never ""."""
    usage = usage_summary(user=user)  # the tier comes with it, in one query
    return {
        "id": user.pk,
        "phone": str(user.phone),
        "name": user.name or None,
        "email": user.email or None,
        "tier": "pro" if usage.unlimited else "basic",
        "has_password": user.has_usable_password(),
        "date_joined": iso_utc(user.date_joined),
        "usage": usage.as_dict(),
    }


def code_sent_payload(issued: IssuedCode, detail: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"detail": detail, "expires_in": issued.expires_in}
    if settings.OTP_RETURN_IN_RESPONSE and issued.code is not None:
        payload["otp"] = issued.code
    return payload
