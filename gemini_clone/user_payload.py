"""The `user` object of the API, composed above the apps that own its parts: the account
(`accounts`), the tier (`billing`, read through usage's query) and today's usage (`usage`).
The account endpoints get it through their URLs, so no app imports one above it."""

from __future__ import annotations

from typing import Any

from accounts.api.payloads import account_payload
from accounts.models import User
from usage.selectors import usage_summary


def user_payload(user: User) -> dict[str, Any]:
    account = account_payload(user)
    usage = usage_summary(user=user)  # the tier comes with it, in one query
    return {
        "id": account["id"],
        "phone": account["phone"],
        "name": account["name"],
        "email": account["email"],
        "tier": "pro" if usage.unlimited else "basic",
        "has_password": account["has_password"],
        "date_joined": account["date_joined"],
        "usage": usage.as_dict(),
    }
