"""Auth and account endpoints: validate, call one service, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts import services
from accounts.api import serializers as s
from accounts.api.payloads import AccountDeleter, UserRenderer, account_payload, code_sent_payload
from accounts.client_ip import client_ip
from accounts.models import User
from accounts.tokens import token_logout, token_refresh_rotate
from core.schema import ErrorResponseSerializer


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description)


def _validated(
    serializer_class: type[serializers.Serializer], request: Request, **context: Any
) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _blank_if_null(data: dict[str, Any], key: str) -> str | None:
    """None when the key was not sent; "" when it was sent as null or ""."""
    if key not in data:
        return None
    return data[key] or ""


def _current_user(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before asking again.",
)
_SEND_REFUSED = _error(
    "`otp_resend_too_soon`: a code was sent to this number for the same purpose less than "
    f"`OTP_RESEND_COOLDOWN_SECONDS` ({settings.OTP_RESEND_COOLDOWN_SECONDS}) ago. "
    f"`otp_send_limit`: more than {settings.OTP_MAX_SENDS_PER_PHONE_PER_HOUR} codes for this "
    f"number, or {settings.OTP_MAX_SENDS_PER_IP_PER_HOUR} from this client IP, in the last "
    "hour. `otp_locked`: code checks for this number are locked by too many wrong codes in a "
    "row. The cooldown, the number's hourly limit and the lock count a network the account "
    "logged in from apart from every other network. All carry `Retry-After` and "
    "`details.retry_after` (seconds)."
)
_SENDING_PAUSED = _error(
    f"`otp_sending_paused`: the service sent its {settings.OTP_MAX_SENDS_PER_HOUR} codes of "
    "the last hour (`OTP_MAX_SENDS_PER_HOUR`), with `Retry-After`."
)
_BAD_CODE = _error(
    "`validation_error` (field errors), `malformed_json`, `otp_invalid` (wrong code), or "
    "`otp_expired` (no active code: expired, already used, or never sent)."
)
_ATTEMPTS_EXCEEDED = _error(
    f"`otp_attempts_exceeded`: wrong try number {settings.OTP_MAX_ATTEMPTS} burns the code; "
    "every try after it gets this until a new code is sent. "
    f"`otp_locked`: {settings.OTP_MAX_CONSECUTIVE_FAILURES} wrong codes in a row for this "
    "number and purpose (across codes) lock code checks until "
    f"{settings.OTP_LOCKOUT_SECONDS} s after the last one, and each wrong code after that "
    "locks again; a network the account logged in from keeps its own count. "
    f"`otp_network_attempts_exceeded`: {settings.OTP_MAX_FAILURES_PER_IP_PER_HOUR} wrong "
    "codes from this client network this clock hour, for any numbers. Both carry "
    "`Retry-After` and `details.retry_after`; the code is not looked at."
)
_AUTH_TAG = ["auth"]
_ACCESS_MINUTES = int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds() // 60)


class RendersUser:
    """A view whose answer holds the `user` object; the URLs pass the renderer that
    composes it (`accounts.api.urls.account_urlpatterns`)."""

    render_user: UserRenderer = staticmethod(account_payload)


class PublicView(APIView):
    """An endpoint for callers without a token (a stale Authorization header is ignored)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    public_endpoint = True


class SendOtpView(PublicView):
    @extend_schema(
        tags=_AUTH_TAG,
        summary="Send a login code",
        description="Sends a 6-digit login code to any valid number. The account is created "
        "when the code is verified (verify-otp).",
        request=s.SendOtpSerializer,
        responses={200: s.CodeSentSerializer, 429: _SEND_REFUSED, 503: _SENDING_PAUSED},
        parameters=[_RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.SendOtpSerializer, request)
        issued = services.otp_login_send(phone=data["phone"], client_ip=client_ip(request))
        return Response(code_sent_payload(issued, "A login code was sent to this number."))


class VerifyOtpView(RendersUser, PublicView):
    @extend_schema(
        tags=_AUTH_TAG,
        summary="Log in with a code",
        description="Logs in with the code from send-otp or signup, creating the account for "
        "a new number. `created` is true on the account's first successful login (created "
        "now, or created unverified by signup and verified now), false afterwards. On that "
        "first login the password and e-mail given at signup survive only when the request "
        "carries the `signup_token` that signup returned; without it they are dropped, so a "
        "signup for someone else's number cannot leave a password on it.",
        request=s.VerifyOtpSerializer,
        responses={
            200: s.VerifyOtpResponseSerializer,
            400: _BAD_CODE,
            403: _error("`account_disabled`: the account was disabled by an operator."),
            429: _ATTEMPTS_EXCEEDED,
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.VerifyOtpSerializer, request)
        login = services.otp_login_verify(
            phone=data["phone"],
            code=data["otp"],
            client_ip=client_ip(request),
            signup_token=data.get("signup_token") or None,
        )
        user = self.render_user(login.user)
        return Response({**login.tokens.as_dict(), "user": user, "created": login.created})


class SignupView(RendersUser, PublicView):
    slow_methods = frozenset({"POST"})  # hashes a password (gemini_clone.asgi)

    @extend_schema(
        tags=_AUTH_TAG,
        summary="Sign up",
        description="Creates an unverified account with optional profile data and sends it a "
        "login code; verify-otp with that code completes the signup. For a number whose "
        "account is still unverified, the given name and email replace the stored ones, the "
        "password is replaced (or removed when none is given) and a new code is sent. The "
        "answer's `signup_token` must go to verify-otp with the code for the password and "
        "e-mail to survive verification.",
        request=s.SignupSerializer,
        responses={
            201: s.SignupResponseSerializer,
            400: _error("`validation_error` (including the password rules) or `malformed_json`."),
            409: _error("`phone_taken`: this number has a verified account; log in instead."),
            429: _SEND_REFUSED,
            503: _SENDING_PAUSED,
        },
        parameters=[_RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.SignupSerializer, request)
        signup = services.user_signup(
            phone=data["phone"],
            client_ip=client_ip(request),
            name=_blank_if_null(data, "name"),
            email=_blank_if_null(data, "email"),
            password=data.get("password"),
        )
        body = code_sent_payload(signup.issued, "Account created. Verify it with the code sent.")
        user = self.render_user(signup.user)
        signup_token = signup.issued.signup_token
        return Response({"user": user, **body, "signup_token": signup_token}, status=201)


class LoginView(RendersUser, PublicView):
    slow_methods = frozenset({"POST"})  # hashes a password (gemini_clone.asgi)

    @extend_schema(
        tags=_AUTH_TAG,
        summary="Log in with a password",
        description="Wrong passwords are counted per number and per client network (IPv4 "
        "address or IPv6 /64) in clock-hour windows; a right password does not count, and a "
        "successful login clears the number's count.",
        request=s.LoginSerializer,
        responses={
            200: s.LoginResponseSerializer,
            401: _error(
                "`invalid_credentials`: wrong password, unknown number, or an account without "
                "a password; the same answer for all three."
            ),
            403: _error(
                "Only after a correct password: `phone_not_verified` (signup not completed "
                "with its code) or `account_disabled`."
            ),
            429: _error(
                "`login_attempts_exceeded`: 10 wrong passwords for this number (with an account "
                "or not), or 50 from this client network, this hour "
                "(`LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR`, `LOGIN_MAX_FAILURES_PER_IP_PER_HOUR`). "
                "The password is not checked. `Retry-After` and `details.retry_after` give the "
                "seconds to the next hour. `password_rate_limited`: more than 5 password checks "
                "(right or wrong, logins and password changes) for this number, or 30 from this "
                "client network, this minute (`PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE`, "
                "`PASSWORD_CHECKS_PER_IP_PER_MINUTE`); `Retry-After` says when the minute ends."
            ),
        },
        parameters=[_RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.LoginSerializer, request)
        login = services.password_login(
            phone=data["phone"], password=data["password"], client_ip=client_ip(request)
        )
        return Response({**login.tokens.as_dict(), "user": self.render_user(login.user)})


class TokenRefreshView(PublicView):
    @extend_schema(
        tags=_AUTH_TAG,
        summary="Rotate a refresh token",
        description="Returns a new pair. The refresh token sent is blacklisted: each works once.",
        request=s.RefreshSerializer,
        responses={
            200: s.TokenPairSerializer,
            401: _error(
                "`token_invalid`: malformed, expired, already rotated, logged out, or revoked "
                "by a password change or reset."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.RefreshSerializer, request)
        return Response(token_refresh_rotate(raw=data["refresh"]).as_dict())


class LogoutView(APIView):
    @extend_schema(
        tags=_AUTH_TAG,
        summary="Log out",
        description="Blacklists the given refresh token. Logging out an already blacklisted "
        "token of yours is not an error. Access tokens stay valid until they expire "
        f"({_ACCESS_MINUTES} minutes).",
        request=s.RefreshSerializer,
        responses={
            204: OpenApiResponse(description="Logged out."),
            400: _error(
                "`validation_error`, `malformed_json`, or `token_invalid`: the refresh token "
                "is malformed, expired, or another user's (a 400: the access token is fine)."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.RefreshSerializer, request)
        token_logout(user=_current_user(request), raw=data["refresh"])
        return Response(status=204)


class ForgotPasswordView(PublicView):
    @extend_schema(
        tags=_AUTH_TAG,
        summary="Ask for a password-reset code",
        description="Answers the same for every valid number, with an account or not, and "
        "applies the same cooldown and limits; a code is only issued (and only returned) for "
        "an existing account.",
        request=s.ForgotPasswordSerializer,
        responses={200: s.CodeSentSerializer, 429: _SEND_REFUSED, 503: _SENDING_PAUSED},
        parameters=[_RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.ForgotPasswordSerializer, request)
        issued = services.password_forgot(phone=data["phone"], client_ip=client_ip(request))
        return Response(
            code_sent_payload(issued, "If an account uses this number, a reset code was sent.")
        )


class ResetPasswordView(PublicView):
    slow_methods = frozenset({"POST"})  # hashes a password (gemini_clone.asgi)

    @extend_schema(
        tags=_AUTH_TAG,
        summary="Reset the password with a code",
        description="Sets the new password and revokes every refresh and access token of the "
        "account (log out everywhere). The password rules that compare it with the account's "
        "name and e-mail run only once the code is accepted; a password they refuse is a "
        "`validation_error` that leaves the code usable.",
        request=s.ResetPasswordSerializer,
        responses={200: s.DetailSerializer, 400: _BAD_CODE, 429: _ATTEMPTS_EXCEEDED},
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.ResetPasswordSerializer, request)
        services.password_reset(
            phone=data["phone"],
            code=data["otp"],
            new_password=data["new_password"],
            client_ip=client_ip(request),
        )
        return Response({"detail": "Your password was reset. Log in with the new password."})


class ChangePasswordView(APIView):
    slow_methods = frozenset({"POST"})  # hashes a password (gemini_clone.asgi)

    @extend_schema(
        tags=_AUTH_TAG,
        summary="Change the password",
        description="Revokes every refresh and access token of the account and returns a "
        "fresh pair for this client. `old_password` is required when the account has a "
        "password, and ignored when it has none.",
        request=s.ChangePasswordSerializer,
        responses={
            200: s.TokenPairSerializer,
            400: _error(
                "`validation_error` (a missing `old_password`, the password rules), "
                "`malformed_json`, or `password_incorrect` (wrong `old_password`)."
            ),
            429: _error(
                "`login_attempts_exceeded`: a wrong `old_password` counts as a wrong login "
                "password; too many for the number or the client network this hour. "
                "`Retry-After` says when the hour ends. `password_rate_limited`: too many "
                "password checks (logins and changes together) for the account or the client "
                "network this minute; `Retry-After` says when the minute ends."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        user = _current_user(request)
        data = _validated(s.ChangePasswordSerializer, request, user=user)
        tokens = services.password_change(
            user=user,
            old_password=data.get("old_password"),
            new_password=data["new_password"],
            client_ip=client_ip(request),
        )
        return Response(tokens.as_dict())


class MeView(RendersUser, APIView):
    slow_methods = frozenset({"DELETE"})  # a password, Stripe (gemini_clone.asgi)
    delete_account: AccountDeleter | None = None  # given by the URLs

    @extend_schema(tags=["user"], summary="The current user", responses={200: s.UserSerializer})
    def get(self, request: Request) -> Response:
        return Response(self.render_user(_current_user(request)))

    @extend_schema(
        tags=["user"],
        summary="Delete my account and everything held about me",
        description=(
            "Needs the account's `password`, or, for an account without one, a login `otp` "
            "(send-otp first): an access token alone is not enough. Deletes the chatrooms, "
            "messages, usage, tokens and the account with their cached data, and, in the "
            "same transaction, closes an open Stripe Checkout and cancels the Stripe "
            "subscription at once. Every token of the account is refused from then on; the "
            "number can sign up again (after the resend cooldown if a code was just sent)."
        ),
        request=s.AccountDeleteSerializer,
        responses={
            204: None,
            400: _error(
                "`validation_error` (the `password` or `otp` the account needs is missing), "
                "`password_incorrect`, or a code error of verify-otp (`otp_invalid`, ...)."
            ),
            409: _error(
                "`reply_in_progress`: a reply is being generated; cancel it or wait (nothing "
                "was deleted). `account_busy`: the account changed while it was being deleted "
                "(a login or a purchase at the same moment); nothing was deleted, try again "
                "(an account without a password with a new code from send-otp: the code was "
                "used)."
            ),
            429: _error(
                "`login_attempts_exceeded` / `password_rate_limited`: a wrong password counts "
                "as a wrong login password; or the code limits of verify-otp."
            ),
            401: _error(
                "`authentication_failed` / `token_invalid`: the token is missing, invalid, or "
                "its account was deleted meanwhile."
            ),
            502: _error(
                "`payment_provider_error`: Stripe did not answer, so the subscription could "
                "not be canceled; nothing was deleted."
            ),
            503: _error(
                "`billing_unavailable`: the account has a Stripe customer but this server has "
                "no Stripe key to cancel its subscription with; or `service_unavailable`: "
                "Redis refused the write that ends the account's sessions. Nothing was "
                "deleted."
            ),
        },
    )
    def delete(self, request: Request) -> Response:
        user = _current_user(request)
        data = _validated(s.AccountDeleteSerializer, request, user=user)
        assert self.delete_account is not None, "account_urlpatterns gives it"
        self.delete_account(
            user=user,
            password=data.get("password"),
            otp=data.get("otp"),
            client_ip=client_ip(request),
        )
        return Response(status=204)

    @extend_schema(
        tags=["user"],
        summary="Update name or email",
        description="Only `name` and `email` can change here; other keys are ignored.",
        request=s.UserUpdateSerializer,
        responses={200: s.UserSerializer},
    )
    def patch(self, request: Request) -> Response:
        data = _validated(s.UserUpdateSerializer, request)
        user = services.user_profile_update(
            user=_current_user(request),
            name=_blank_if_null(data, "name"),
            email=_blank_if_null(data, "email"),
        )
        return Response(self.render_user(user))
