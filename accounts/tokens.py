"""JWT pairs: issue, rotate, log out one, revoke all.

Refresh tokens are recorded by simplejwt's blacklist app (`OutstandingToken`) and revoked by
blacklisting. Both tokens carry a hash of the password hash (`SIMPLE_JWT` CHECK_REVOKE_TOKEN
claim "pwd"), so a password change or reset also ends every access token issued before, and
rotation refuses a refresh token minted under an older password.

Every refresh token belongs to a family, the tokens rotated one from another since one login
(`RefreshTokenFamilyMember`). A token that was already rotated, presented again, means two
parties hold the family (a thief and its owner; which one is late cannot be told), so the
whole family is revoked (reuse detection, RFC 9700 section 4.14.2). The family's access
tokens are not revoked: they live out their lifetime (15 minutes by default), since ending them
at once would need a look-up on every authenticated request.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.errors import LogoutTokenInvalid, RefreshTokenRejected
from accounts.models import RefreshTokenFamilyMember, User

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str

    def as_dict(self) -> dict[str, str]:
        return {"access": self.access, "refresh": self.refresh}


def token_pair_issue(*, user: User, family: uuid.UUID | None = None) -> TokenPair:
    """A new pair; its refresh token joins `family`, or starts a new one (a login)."""
    with transaction.atomic():
        refresh = RefreshToken.for_user(user)  # records the OutstandingToken
        outstanding = OutstandingToken.objects.get(jti=refresh[api_settings.JTI_CLAIM])
        RefreshTokenFamilyMember.objects.create(token=outstanding, family=family or uuid.uuid4())
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


# The users' id column is a bigint.
_MAX_USER_ID = 2**63 - 1


def token_user_id(value: object) -> int | None:
    """The user id of a token's claim when it is written as our tokens write it: simplejwt
    writes the id as a decimal string ("42"); older releases wrote the integer. It must be
    positive and within the id column's range. Anything else (another spelling such as
    "042" or "42.0", a float, true, null, an object), however well signed, names no user."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= len(str(_MAX_USER_ID))
        and value.isascii()
        and value.isdigit()
        and not value.startswith("0")
    ):
        value = int(value)
    if type(value) is not int or not 0 < value <= _MAX_USER_ID:
        return None
    return value


def token_refresh_rotate(*, raw: str) -> TokenPair:
    """Trade a refresh token for a new pair, blacklisting it; each token works once.

    Locks the user's row, then the token's: the order of password change, reset and logout,
    which lock the user and then blacklist tokens. With the opposite order a rotation racing a
    password change deadlocked (PostgreSQL checks Django's foreign keys at commit, so each
    side ended up waiting for a row the other held) or minted a pair the change never saw.
    Now two concurrent refreshes with the same token yield one pair (which the second then
    revokes as a reuse, below), and a rotation waiting
    behind a password change finds its token blacklisted. The token's "pwd" claim must also
    match the current password, so a password set any other way (the admin) ends refresh
    tokens too. The new pair is minted from the user as they are now, in the token's family.

    A token that was rotated before is a reuse: its family is revoked (committed) and the
    answer is the same refusal. So of two concurrent refreshes with one token, the second is
    a reuse and ends the pair the first got. A logged-out token is refused, nothing more.
    """
    claims = _decode_refresh(raw)
    user_id = token_user_id(claims.get(api_settings.USER_ID_CLAIM)) if claims else None
    if claims is None or user_id is None:
        raise RefreshTokenRejected()
    pair = _rotate(claims=claims, user_id=user_id)
    if pair is None:
        raise RefreshTokenRejected()
    return pair


def _rotate(*, claims: dict[str, Any], user_id: int) -> TokenPair | None:
    """The new pair, or None when the token is refused (after revoking its family on a
    reuse: returning, not raising, lets that commit)."""
    with transaction.atomic():
        user = User.objects.select_for_update().filter(pk=user_id, is_active=True).first()
        if user is None:
            return None
        outstanding = (
            # No ordering: the model's default one joins the nullable user, which FOR UPDATE
            # cannot lock.
            OutstandingToken.objects.select_for_update()
            .filter(jti=claims[api_settings.JTI_CLAIM])
            .order_by()
            .first()
        )
        if outstanding is None or outstanding.user_id != user.pk:
            return None
        # Family rows change only under their user's lock, which is held here.
        member = RefreshTokenFamilyMember.objects.filter(token=outstanding).first()
        if BlacklistedToken.objects.filter(token=outstanding).exists():
            if member is not None and member.rotated_at is not None:
                revoked = _family_revoke(family=member.family)
                logger.warning(
                    "Refresh token reuse: user %s, family %s; revoked its %s live tokens",
                    user.pk,
                    member.family,
                    revoked,
                )
            return None
        if not _password_claim_current(claims, user):
            return None
        BlacklistedToken.objects.create(token=outstanding)
        if member is None:  # issued before families were recorded: it starts one now
            member = RefreshTokenFamilyMember(token=outstanding, family=uuid.uuid4())
        member.rotated_at = timezone.now()
        member.save()
        return token_pair_issue(user=user, family=member.family)


def _family_revoke(*, family: uuid.UUID) -> int:
    """Blacklist the family's tokens not blacklisted yet; returns how many."""
    live = OutstandingToken.objects.filter(
        family__family=family, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
    )
    return len(revoked)


def _password_claim_current(claims: dict[str, Any], user: User) -> bool:
    if not api_settings.CHECK_REVOKE_TOKEN:
        return True
    expected = get_md5_hash_password(user.password)
    return hmac.compare_digest(str(claims.get(api_settings.REVOKE_TOKEN_CLAIM, "")), expected)


def token_logout(*, user: User, raw: str) -> None:
    """End the session of one of the user's refresh tokens: blacklist the token and its
    family, so a token rotated from it by someone else ends too. Logging out twice is not an
    error.

    A token that does not decode, has expired, or belongs to someone else is refused
    (LogoutTokenInvalid, 400) the same way, so nothing is learnt about other users.
    """
    claims = _decode_refresh(raw)
    if claims is None or token_user_id(claims.get(api_settings.USER_ID_CLAIM)) != user.pk:
        raise LogoutTokenInvalid()
    with transaction.atomic():
        # The user's row first, like rotation: the foreign keys are checked at commit, so a
        # logout that blacklisted a token unlocked would then wait for a rotation holding that
        # token's row, while the rotation waits for the logout's blacklist row.
        User.objects.select_for_update().filter(pk=user.pk).first()
        outstanding = OutstandingToken.objects.filter(
            jti=claims[api_settings.JTI_CLAIM], user=user
        ).first()
        if outstanding is None:
            raise LogoutTokenInvalid()
        BlacklistedToken.objects.get_or_create(token=outstanding)
        member = RefreshTokenFamilyMember.objects.filter(token=outstanding).first()
        if member is not None:
            revoked = _family_revoke(family=member.family)
            if member.rotated_at is not None and revoked:
                logger.warning(
                    "Refresh token reuse at logout: user %s, family %s; revoked its %s live tokens",
                    user.pk,
                    member.family,
                    revoked,
                )


def tokens_revoke_all(*, user: User) -> int:
    """Blacklist every unexpired refresh token of the user (log out everywhere)."""
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
    )
    return len(revoked)
