"""System checks of the account settings, shown by `manage.py check --deploy`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def otp_in_response_check(**kwargs: Any) -> list[Warning]:
    if settings.OTP_RETURN_IN_RESPONSE and not settings.DEBUG:
        return [
            Warning(
                "OTP_RETURN_IN_RESPONSE is on with DEBUG off: every one-time code is returned "
                "to whoever asked for it, so anyone can log in to any phone number.",
                hint="Set OTP_RETURN_IN_RESPONSE=false and OTP_DELIVERY_BACKEND to your SMS "
                "provider's delivery function.",
                id="accounts.W001",
            )
        ]
    return []
