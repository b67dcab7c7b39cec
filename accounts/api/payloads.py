"""Plain-dict renderings of the account endpoints' answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings

from accounts.models import User
from accounts.otp import IssuedCode
from core.timestamps import iso_utc

# Renders the `user` object of the answers. The contract's object also holds the tier and
# today's usage, which belong to the apps above this one: the project composes the whole
# object (`gemini_clone.user_payload`) and hands it to these views through their URLs.
UserRenderer = Callable[[User], dict[str, Any]]


class AccountDeleter(Protocol):
    """Deletes an account and everything held about it (the project's: `gemini_clone.
    account_deletion`, which reaches the apps above this one), once the caller proved it
    owns the account with its password or a login code."""

    def __call__(
        self, *, user: User, password: str | None, otp: str | None, client_ip: str | None
    ) -> None: ...


def account_payload(user: User) -> dict[str, Any]:
    """The account's own fields of the `user` object. An unset name or email is null."""
    return {
        "id": user.pk,
        # The stored E.164 form; str() would validate the number again first (18 µs of the
        # phonenumbers library on every /me, against 0.4).
        "phone": user.phone.as_e164,
        "name": user.name or None,
        "email": user.email or None,
        "has_password": user.has_usable_password(),
        "date_joined": iso_utc(user.date_joined),
    }


def code_sent_payload(issued: IssuedCode, detail: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"detail": detail, "expires_in": issued.expires_in}
    if settings.OTP_RETURN_IN_RESPONSE and issued.code is not None:
        payload["otp"] = issued.code
    return payload
