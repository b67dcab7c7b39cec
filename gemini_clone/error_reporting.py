"""Error reports to Sentry, on only when `SENTRY_DSN` is set (settings.py calls
`error_reporting_start` then, in the web, the worker and beat alike).

A report must not carry what our logs may not: phone numbers, codes, tokens, passwords.
sentry-sdk already leaves out cookies, the client address and the user's details unless
`send_default_pii` is on (it stays off), and its scrubber blanks variables and fields named
like secrets. On top of that, request bodies are never attached, our own field names
(`phone`, `code`, `access`, `refresh`, ...) join the scrubber's list, and every string of the
event is searched for what looks like a phone number (masked to its last digits, as in our
logs), a JWT or a Stripe key (replaced). Of the user, at most the id leaves.
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber

from accounts.otp_delivery import mask_phone

# Field and variable names whose values are personal or secret in this project.
OUR_DENYLIST = [
    "phone",
    "code",
    "otp",
    "old_password",
    "new_password",
    "access",
    "refresh",
    "jwt_secret",
    "idempotency_key",
    "stripe_signature",
    "http_stripe_signature",
    "http_authorization",
]

_PHONE = re.compile(r"\+\d{8,15}\b")
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+")
_STRIPE_KEY = re.compile(r"\b(?:sk|rk|whsec)_\w{8,}")


def scrub_text(text: str) -> str:
    text = _PHONE.sub(lambda match: mask_phone(match.group()), text)
    text = _JWT.sub("[jwt]", text)
    return _STRIPE_KEY.sub("[stripe key]", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def scrub_event(event: Any, hint: Any) -> Any:
    """`before_send`: masks personal data left in any string of the event."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {"id": user["id"]} if "id" in user else {}
    return _scrub(event)


def error_reporting_start(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        event_scrubber=EventScrubber(
            denylist=DEFAULT_DENYLIST + OUR_DENYLIST,
            pii_denylist=DEFAULT_PII_DENYLIST,
            recursive=True,
        ),
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        traces_sample_rate=traces_sample_rate,
    )
