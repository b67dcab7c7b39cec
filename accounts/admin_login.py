"""The admin's sign-in form, under the API login's brute-force limits.

Wrong passwords at `/admin/login/` are counted by `accounts.login_throttle`, in the same
PostgreSQL counters as `POST /api/auth/login`: per phone number and per client network, per
clock hour. One budget for both doors, so alternating them gains an attacker nothing; no
new dependency (django-axes would keep a second set of counters and its own lockout rules);
and the limit holds with Redis down. Every sign-in, refused or not, is logged with the user
id or a masked number and the client network, never the password.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import phonenumbers
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from accounts.client_ip import client_ip, client_network_key
from accounts.errors import LoginAttemptsExceeded
from accounts.login_throttle import login_attempt_begin
from accounts.otp_delivery import mask_phone

logger = logging.getLogger(__name__)


def _as_counted(phone: str) -> str:
    """The number as the API login counts it (E.164), or the typed text, bounded."""
    try:
        number = phonenumbers.parse(phone, settings.PHONENUMBER_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return phone[:32]
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    def clean(self) -> dict[str, Any]:
        phone = _as_counted(self.cleaned_data.get("username") or "")
        ip = client_ip(self.request) if self.request is not None else None
        network = client_network_key(ip)
        try:
            attempt = login_attempt_begin(phone=phone, client_ip=ip)
        except LoginAttemptsExceeded as refused:
            retry_after = int(refused.details["retry_after"])
            logger.warning(
                "Admin sign-in refused (too many failures): %s from %s", mask_phone(phone), network
            )
            minutes = math.ceil(retry_after / 60)
            raise ValidationError(
                f"Too many failed sign-ins for this number or from this network. "
                f"Try again in {minutes} minutes.",
                code="login_attempts_exceeded",
            ) from None
        try:
            cleaned = super().clean()
        except ValidationError:
            logger.warning("Admin sign-in failed: %s from %s", mask_phone(phone), network)
            raise  # the attempt keeps its slots: a failure
        attempt.succeed()
        logger.info("Admin sign-in: user %s from %s", self.get_user().pk, network)
        return cleaned
