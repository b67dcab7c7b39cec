"""Django's password validators (AUTH_PASSWORD_VALIDATORS), as a list of messages."""

from __future__ import annotations

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError

from accounts.models import User


def password_rule_errors(password: str, user: User) -> list[str]:
    """The validators' messages for `password`, or [] when it passes.

    Some validators compare the password with the user's name and e-mail, so their answer
    says something about the account: give them the real user only once the caller has
    proved they may see it (a token, or a code that was just accepted).
    """
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as exc:
        return list(exc.messages)
    return []
