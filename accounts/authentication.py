"""JWT authentication with simplejwt's checks, on a user read through `auth_cache`.

The user's cached row and the request's count for the per-user throttle come back in one
Redis round trip (`core.throttling.request_count_with`); the count is left on the request
for the throttle. The view's own Redis reads, when it names them (`core.redis_prefetch`),
come back in that round trip too, and are left on the request for the view.

A token's signature is verified once per process: the tokens verified last are kept
(`_verified`, bounded), and a kept one is checked again only for its expiry, against the
clock of each request. What revokes a token (a password change, a deactivation) lives in the
user row, which every request checks, so keeping verifications revokes nothing late."""

from __future__ import annotations

import functools
from typing import Any, cast

from django.contrib.auth.base_user import AbstractBaseUser
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow, get_md5_hash_password

from accounts.auth_cache import auth_user_from_redis, auth_user_redis_key, auth_user_remember
from accounts.models import User
from accounts.tokens import token_user_id
from core.redis_prefetch import RedisRead, prefetch_reads_of_view, prefetched_keep
from core.throttling import (
    Counted,
    request_count_with,
    request_counted,
    request_counted_earlier,
)

_VERIFIED_TOKENS = 4096  # a few MiB at most


@functools.lru_cache(maxsize=_VERIFIED_TOKENS)
def _verified(raw_token: bytes) -> Token:
    """simplejwt's verification of the token (signature, type, claims); raises when invalid,
    and an invalid token is never kept."""
    return JWTAuthentication().get_validated_token(raw_token)


def token_validated(raw_token: bytes) -> Token:
    """The token, verified and unexpired by this request's clock; raises InvalidToken."""
    token = _verified(raw_token)
    try:
        token.check_exp(current_time=aware_utcnow())
    except TokenError as exc:
        raise InvalidToken(
            {"detail": "Given token not valid for any token type", "messages": [exc.args[0]]}
        ) from exc
    return token


def token_user_id_of(token: Token) -> int:
    """The id of the user the token names; raises InvalidToken when it names none."""
    user_id = token_user_id(token.get(api_settings.USER_ID_CLAIM))
    if user_id is None:
        raise InvalidToken("Token contained no recognizable user identification")
    return user_id


def cached_user_checked(cached: AbstractBaseUser, token: Token) -> AbstractBaseUser:
    """simplejwt's checks of the user, on the cached copy: raises AuthenticationFailed when
    the user is inactive or the token was issued before a password change."""
    if api_settings.CHECK_USER_IS_ACTIVE and not cached.is_active:
        raise AuthenticationFailed("User is inactive", code="user_inactive")
    if api_settings.CHECK_REVOKE_TOKEN and token.get(
        api_settings.REVOKE_TOKEN_CLAIM
    ) != get_md5_hash_password(cached.password):
        raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
    return cached


class CachedUserJWTAuthentication(JWTAuthentication):
    # DRF builds an authenticator per request, and simplejwt's __init__ looks the user model
    # up each time (`get_user_model()`: about 3% of a cached list's CPU); it is known here.
    user_model = User

    def __init__(self) -> None:
        """Nothing to set up: `user_model` is the class's."""

    def get_validated_token(self, raw_token: bytes) -> Token:
        return token_validated(raw_token)

    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        self._request = request
        self._counted: Counted | None = None
        self._view_reads: list[RedisRead] = []
        result = super().authenticate(request)
        if result is not None and self._counted is not None:
            request_counted(request._request, self._counted.wait)
            if self._counted.values:
                prefetched_keep(request._request, self._view_reads, self._counted.values[1:])
        return result

    def get_user(self, validated_token: Token) -> Any:
        user_id = token_user_id_of(validated_token)
        view = self._request.parser_context.get("view")
        self._view_reads = prefetch_reads_of_view(view, self._request, user_id)
        self._counted = request_count_with(
            user_id=user_id,
            also_read=[RedisRead(auth_user_redis_key(user_id=user_id)), *self._view_reads],
            counted_already=request_counted_earlier(self._request._request, user_id=user_id),
        )
        cached = auth_user_from_redis(self._counted.values[0] if self._counted.values else None)
        if cached is None:
            # simplejwt's own lookup and checks; only a user that passes them is remembered.
            user = cast(User, super().get_user(validated_token))
            auth_user_remember(user=user)
            return user
        return cached_user_checked(cached, validated_token)


class CachedUserJWTScheme(SimpleJWTScheme):
    """Documents the class in OpenAPI as the Bearer JWT scheme it is."""

    target_class = "accounts.authentication.CachedUserJWTAuthentication"
