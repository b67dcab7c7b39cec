from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone
from phonenumber_field.modelfields import PhoneNumberField
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.auth_cache import auth_user_drop, auth_user_forget, auth_user_revoke


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, phone: str, password: str | None = None, **extra: Any) -> User:
        if not phone:
            raise ValueError("A phone number is required.")
        user = self.model(phone=phone, **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, phone: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("phone_verified_at", timezone.now())
        return self.create_user(phone, password, **extra)


# Fields no request reads from the Redis copy of the row (`accounts.auth_cache`): the login
# paths read the row itself, and so does the account's export.
_NOT_READ_FROM_THE_COPY = frozenset({"last_login", "phone_verified_at"})


class User(AbstractBaseUser, PermissionsMixin):
    """An account, keyed by its E.164 phone number."""

    phone = PhoneNumberField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    phone_verified_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by the first successful OTP login."
    )

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    # The password and is_active as read from the database (see `save`).
    _credentials_as_loaded: tuple[object, object] | None = None

    class Meta:
        ordering = ("-date_joined",)

    def __str__(self) -> str:
        return str(self.phone)

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> User:
        user = super().from_db(*args, **kwargs)
        user._credentials_as_loaded = user._credentials()
        return user

    def _credentials(self) -> tuple[object, object]:
        """What authentication checks a token against (a deferred field reads as None)."""
        return self.__dict__.get("password"), self.__dict__.get("is_active")

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if self._state.adding and self.pk is None:  # a new row, its id from the sequence
            super().save(*args, **kwargs)
            # No copy can be of this row; one left under its id by a database restored from
            # a backup is removed, without the marker that would keep the copy out for 10 s.
            auth_user_drop(user_id=self.pk)
            self._credentials_as_loaded = self._credentials()
            return
        if update_fields is not None and set(update_fields) <= _NOT_READ_FROM_THE_COPY:
            # A login's time and first verification are not read from the copy: it stays.
            # Forgetting it would keep it out for the marker's 10 s, and every request of a
            # user who just logged in would read the row from PostgreSQL. Nothing else was
            # written, so what a later save must compare the credentials with is unchanged.
            super().save(*args, **kwargs)
            return
        revokes = not self._state.adding and self._credentials() != self._credentials_as_loaded
        if revokes:
            auth_user_revoke(user_id=self.pk)  # raises, before any write, if it cannot
        super().save(*args, **kwargs)
        auth_user_forget(user_id=self.pk)
        self._credentials_as_loaded = self._credentials()

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        user_id = self.pk
        auth_user_revoke(user_id=user_id)
        deleted = super().delete(*args, **kwargs)
        auth_user_forget(user_id=user_id)
        return deleted


class OneTimeCode(models.Model):
    """One OTP sent to a phone. Only a keyed hash of the code is kept (see `accounts.otp`).

    The rows double as the send log the resend cooldown and the hourly limits count.
    """

    class Purpose(models.TextChoices):
        LOGIN = "login", "Login"
        PASSWORD_RESET = "password_reset", "Password reset"

    phone = PhoneNumberField()
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    scope = models.CharField(
        max_length=50,
        default="other",
        help_text="The client network it was asked from when the number had logged in from "
        'there before, else "other" (see `accounts.otp_scopes`).',
    )
    code_hash = models.CharField(max_length=64, editable=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Wrong tries so far.")
    used_at = models.DateTimeField(null=True, blank=True)
    from_signup = models.BooleanField(default=False, help_text="Issued by signup.")
    # Set for codes sent by signup. Verifying keeps the signup's password and e-mail only
    # when this token comes with the code (see `accounts.otp`).
    signup_token_hash = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(
                fields=["phone", "purpose", "-created_at"], name="otp_phone_purpose_recent"
            ),
            models.Index(fields=["client_ip", "created_at"], name="otp_ip_created"),
            models.Index(fields=["created_at"], name="otp_created"),
        ]
        ordering = ("-created_at",)
        verbose_name = "one-time code"

    def __str__(self) -> str:
        return f"{self.purpose} code for {self.phone} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class LoginFailureCount(models.Model):
    """Failed logins in one clock hour for one key: wrong passwords for a phone number or
    from a client network, wrong codes from a client network.

    Kept in PostgreSQL, not Redis, so the brute-force limits hold while Redis is down or
    after it restarts empty (see `accounts.login_throttle`). Past hours are purged hourly.
    """

    key = models.CharField(
        max_length=80,
        help_text='"phone:<E.164>", "network:<address/prefix>" or "otp-network:<address/prefix>"',
    )
    window_start = models.DateTimeField(help_text="The clock hour counted.")
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="login_failure_key_window")
        ]
        indexes = [models.Index(fields=["window_start"], name="login_failure_window")]

    def __str__(self) -> str:
        return f"{self.key} at {self.window_start:%Y-%m-%d %H:00}: {self.count}"


class RefreshTokenFamilyMember(models.Model):
    """A refresh token's family: every token rotated from one login shares the login's id.

    Presenting a token that was already rotated revokes the family (see `accounts.tokens`).
    Deleted with its token when expired tokens are flushed.
    """

    token = models.OneToOneField(
        OutstandingToken, on_delete=models.CASCADE, primary_key=True, related_name="family"
    )
    family = models.UUIDField(db_index=True)
    rotated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the token was traded for a new pair."
    )

    def __str__(self) -> str:
        return f"token {self.token_id} of family {self.family}"


class KnownNetwork(models.Model):
    """A client network (an IPv4 address or an IPv6 /64) the user logged in from.

    Codes asked for and tried from such a network have their own send budget and their own
    count of wrong tries, which strangers trying the number cannot use up
    (`accounts.otp_scopes`).
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="known_networks")
    network = models.CharField(max_length=50)
    last_login_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "network"], name="known_network_user_network")
        ]

    def __str__(self) -> str:
        return f"{self.network} (last login {self.last_login_at:%Y-%m-%d %H:%M})"


class OtpFailureStreak(models.Model):
    """Wrong codes in a row for one phone number, purpose and scope, across codes.

    A right code ends the streak; a long one locks code checks (`accounts.otp_scopes`).
    """

    phone = PhoneNumberField()
    purpose = models.CharField(max_length=20, choices=OneTimeCode.Purpose.choices)
    scope = models.CharField(max_length=50)
    failures = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["phone", "purpose", "scope"], name="otp_streak_phone_purpose_scope"
            )
        ]
        indexes = [models.Index(fields=["last_failure_at"], name="otp_streak_last_failure")]

    def __str__(self) -> str:
        return f"{self.failures} wrong {self.purpose} codes for {self.phone} ({self.scope})"
