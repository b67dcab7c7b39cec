"""JWT pairs: issue, rotate, log out one, revoke all.

Refresh tokens are recorded by simplejwt's blacklist app (`OutstandingToken`) and revoked by
blacklisting. Access tokens carry a hash of the password hash (`SIMPLE_JWT` CHECK_REVOKE_TOKEN
claim "pwd"), so a password change or reset also ends every access token issued before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.errors import LogoutTokenInvalid, RefreshTokenRejected
from accounts.models import User


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str

    def as_dict(self) -> dict[str, str]:
        return {"access": self.access, "refresh": self.refresh}


def token_pair_issue(*, user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)  # records the OutstandingToken
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def _decode_refresh(raw: str) -> dict[str, Any] | None:
    """The claims of a well-signed, unexpired refresh token, blacklisted or not."""
    try:
        # Typed as taking a Token, but it decodes the encoded string.
        claims: dict[str, Any] = token_backend.decode(raw, verify=True)  # type: ignore[arg-type]
    except TokenBackendError:  # bad signature, malformed or expired
        return None
    if claims.get(api_settings.TOKEN_TYPE_CLAIM) != RefreshToken.token_type:
        return None
    if not claims.get(api_settings.JTI_CLAIM) or not claims.get(api_settings.USER_ID_CLAIM):
        return None
    return claims


def token_refresh_rotate(*, raw: str) -> TokenPair:
    """Trade a refresh token for a new pair, blacklisting it; each token works once.

    The row lock makes two concurrent refreshes with the same token yield one pair, not two.
    The new pair is minted from the user as they are now, so its "pwd" claim is current.
    """
    claims = _decode_refresh(raw)
    if claims is None:
        raise RefreshTokenRejected()
    with transaction.atomic():
        outstanding = (
            # No ordering: the model's default one joins the nullable user, which FOR UPDATE
            # cannot lock.
            OutstandingToken.objects.select_for_update()
            .filter(jti=claims[api_settings.JTI_CLAIM])
            .order_by()
            .first()
        )
        if outstanding is None or BlacklistedToken.objects.filter(token=outstanding).exists():
            raise RefreshTokenRejected()
        user_id = outstanding.user_id
        if user_id is None or str(user_id) != str(claims[api_settings.USER_ID_CLAIM]):
            raise RefreshTokenRejected()
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            raise RefreshTokenRejected()
        BlacklistedToken.objects.create(token=outstanding)
        return token_pair_issue(user=user)


def token_logout(*, user: User, raw: str) -> None:
    """Blacklist one of the user's refresh tokens. Logging out twice is not an error.

    A token that does not decode, has expired, or belongs to someone else is refused
    (LogoutTokenInvalid, 400) the same way, so nothing is learnt about other users.
    """
    claims = _decode_refresh(raw)
    if claims is None or str(claims[api_settings.USER_ID_CLAIM]) != str(user.pk):
        raise LogoutTokenInvalid()
    outstanding = OutstandingToken.objects.filter(
        jti=claims[api_settings.JTI_CLAIM], user=user
    ).first()
    if outstanding is None:
        raise LogoutTokenInvalid()
    BlacklistedToken.objects.get_or_create(token=outstanding)


def tokens_revoke_all(*, user: User) -> int:
    """Blacklist every unexpired refresh token of the user (log out everywhere)."""
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
    )
    return len(revoked)
