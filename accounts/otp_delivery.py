"""How a code reaches the phone: one pluggable function named by `OTP_DELIVERY_BACKEND`.

A backend is `f(*, phone: str, code: str, purpose: str) -> None`. An SMS provider would be
one more such function; this project ships only `log_delivery`, the development stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

DeliveryBackend = Callable[..., None]


def mask_phone(phone: str) -> str:
    """`+919876543210` → `+91******3210`: enough to tell numbers apart in a log."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def log_delivery(*, phone: str, code: str, purpose: str) -> None:
    """Logs that a code was sent, never the code: logs travel further than the API's
    answers. In development the answer carries it (`OTP_RETURN_IN_RESPONSE`)."""
    logger.info("OTP sent to %s (%s)", mask_phone(phone), purpose)


def otp_deliver(*, phone: str, code: str, purpose: str) -> None:
    backend: DeliveryBackend = import_string(settings.OTP_DELIVERY_BACKEND)
    backend(phone=phone, code=code, purpose=purpose)
