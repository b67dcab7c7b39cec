"""Request validation and response shapes of the auth and account endpoints.

Request serializers only validate; answers are built by `accounts.api.payloads`, and the
response serializers here describe them for the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.api.fields import PhoneField
from accounts.models import User
from accounts.password_rules import password_rule_errors
from core.fields import StrictCharField, StrictEmailField

_code_format = RegexValidator(r"^[0-9]{6}$", "Enter the 6-digit code.")


def _otp_field() -> StrictCharField:
    return StrictCharField(validators=[_code_format], help_text="The 6-digit code.")


def _password_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        trim_whitespace=False, max_length=4096, style={"input_type": "password"}, **kwargs
    )


def _name_field() -> StrictCharField:
    return StrictCharField(
        max_length=150,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text='Display name; null or "" clears it.',
    )


def _email_field() -> StrictEmailField:
    return StrictEmailField(
        max_length=254,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text='Contact e-mail; null or "" clears it.',
    )


# --- Requests ---------------------------------------------------------------------


class SendOtpSerializer(serializers.Serializer):
    phone = PhoneField()


class VerifyOtpSerializer(serializers.Serializer):
    phone = PhoneField()
    otp = _otp_field()
    signup_token = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=128,
        help_text="The `signup_token` signup returned, when verifying its code. Without it "
        'the password and e-mail given at signup are dropped. null or "" is the same as absent.',
    )


class SignupSerializer(serializers.Serializer):
    phone = PhoneField()
    name = _name_field()
    email = _email_field()
    password = _password_field(
        required=False,
        help_text="Optional; checked by the password rules. Usable after the "
        "phone is verified with the code this signup sends.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        password = attrs.get("password")
        if password:
            candidate = User(
                phone=attrs["phone"], name=attrs.get("name") or "", email=attrs.get("email") or ""
            )
            if errors := password_rule_errors(password, candidate):
                raise serializers.ValidationError({"password": errors})
        return attrs


class LoginSerializer(serializers.Serializer):
    phone = PhoneField()
    password = _password_field()


class RefreshSerializer(serializers.Serializer):
    refresh = StrictCharField(help_text="The refresh token.")


class ForgotPasswordSerializer(serializers.Serializer):
    phone = PhoneField()


class ResetPasswordSerializer(serializers.Serializer):
    phone = PhoneField()
    otp = _otp_field()
    new_password = _password_field(help_text="Checked by the password rules.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Only the rules that need no account: the caller has not proved the phone yet, and
        # checking against the real user would tell whether it exists and hint at its name
        # and e-mail. The reset service checks against the account once the code is right.
        if errors := password_rule_errors(attrs["new_password"], User(phone=attrs["phone"])):
            raise serializers.ValidationError({"new_password": errors})
        return attrs


class ChangePasswordSerializer(serializers.Serializer):
    """Needs `context["user"]`: whether `old_password` is required depends on the account."""

    old_password = _password_field(
        required=False, help_text="Required when the account has a password (`has_password`)."
    )
    new_password = _password_field(help_text="Checked by the password rules.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user: User = self.context["user"]
        if user.has_usable_password() and "old_password" not in attrs:
            required = self.fields["old_password"].error_messages["required"]
            raise serializers.ValidationError({"old_password": [required]})
        if errors := password_rule_errors(attrs["new_password"], user):
            raise serializers.ValidationError({"new_password": errors})
        return attrs


class AccountDeleteSerializer(serializers.Serializer):
    """Needs `context["user"]`: the account's password if it has one, else a login code."""

    password = _password_field(
        required=False, help_text="Required when the account has a password (`has_password`)."
    )
    otp = StrictCharField(
        required=False,
        validators=[_code_format],
        help_text="Required when it has none: a login code, sent with `POST /api/auth/send-otp`.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user: User = self.context["user"]
        needed = "password" if user.has_usable_password() else "otp"
        if needed not in attrs:
            raise serializers.ValidationError(
                {needed: [self.fields[needed].error_messages["required"]]}
            )
        return attrs


class UserUpdateSerializer(serializers.Serializer):
    """PATCH /user/me. Other keys (the phone included) are ignored."""

    name = _name_field()
    email = _email_field()


# --- Responses (schema only) ---------------------------------------------------------


class UsageSummarySerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="Prompts a day; null for Pro.")
    used = serializers.IntegerField(help_text="Prompts sent today.")
    remaining = serializers.IntegerField(allow_null=True, help_text="null for Pro.")
    resets_at = serializers.DateTimeField(help_text="When today's count starts again.")
    tokens_today = serializers.IntegerField(
        help_text="Tokens in and out of the replies completed today (see a reply's `usage`)."
    )


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField(help_text="E.164.")
    name = serializers.CharField(allow_null=True, help_text='null when not set (never "").')
    email = serializers.EmailField(allow_null=True, help_text='null when not set (never "").')
    tier = serializers.ChoiceField(choices=["basic", "pro"])
    has_password = serializers.BooleanField(help_text="False for accounts that log in by OTP only.")
    date_joined = serializers.DateTimeField()
    usage = UsageSummarySerializer()


class CodeSentSerializer(serializers.Serializer):
    detail = serializers.CharField()
    otp = serializers.CharField(
        required=False,
        help_text="The code itself, only while OTP_RETURN_IN_RESPONSE is on (never in "
        "production), and for forgot-password only when the account exists.",
    )
    expires_in = serializers.IntegerField(help_text="Seconds the code stays valid.")


def _lifetime(name: str) -> str:
    seconds = int(getattr(jwt_settings, name).total_seconds())
    return f"{seconds // 86400} days" if seconds % 86400 == 0 else f"{seconds // 60} minutes"


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(
        help_text=f"JWT for `Authorization: Bearer`, {_lifetime('ACCESS_TOKEN_LIFETIME')}."
    )
    refresh = serializers.CharField(
        help_text=f"Single-use refresh token, {_lifetime('REFRESH_TOKEN_LIFETIME')}."
    )


class LoginResponseSerializer(TokenPairSerializer):
    user = UserSerializer()


class VerifyOtpResponseSerializer(LoginResponseSerializer):
    created = serializers.BooleanField(
        help_text="True when this is the account's first successful login: the account was "
        "created now, or created unverified by signup and verified now."
    )


class SignupResponseSerializer(CodeSentSerializer):
    user = UserSerializer()
    signup_token = serializers.CharField(
        help_text="Send it to verify-otp with the code: only then do the password and e-mail "
        "given here survive verification. Keep it secret; it works for this signup's code only."
    )


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
