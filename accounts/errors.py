"""The errors of the auth and account endpoints, each with the contract's stable code."""

from __future__ import annotations

from core.errors import ApiError, ServiceUnavailable

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


class RevocationUnavailable(ServiceUnavailable):
    """A change that must end the user's sessions (a new password, a deactivation, a
    deletion) could not clear the cached user row that authentication reads: the change is
    refused, so no token outlives it (see `accounts.auth_cache`)."""

    message = "The account could not be changed right now; nothing was changed. Try again."
    retry_after_seconds = 5

    def __init__(self) -> None:
        super().__init__(
            details={"retry_after": self.retry_after_seconds},
            headers={"Retry-After": str(self.retry_after_seconds)},
        )


class OtpInvalid(ApiError):
    status_code = 400
    code = "otp_invalid"
    message = "The code is not correct."


class OtpExpired(ApiError):
    status_code = 400
    code = "otp_expired"
    message = "There is no active code for this number: it expired, was used, or was never sent."


class OtpAttemptsExceeded(ApiError):
    status_code = 429
    code = "otp_attempts_exceeded"
    message = "Too many wrong tries. Request a new code."


class _RetryLater(ApiError):
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            details={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}
        )


class OtpResendTooSoon(_RetryLater):
    code = "otp_resend_too_soon"
    message = "A code was sent moments ago. Wait before asking for another."


class OtpSendLimit(_RetryLater):
    code = "otp_send_limit"
    message = "Too many codes were requested. Try again later."


class OtpLocked(_RetryLater):
    code = "otp_locked"
    message = (
        "Too many wrong codes for this number in a row. Code checks are locked for a while; "
        "log in with a password if the account has one."
    )


class OtpNetworkAttemptsExceeded(_RetryLater):
    code = "otp_network_attempts_exceeded"
    message = "Too many wrong codes from this network this hour. Try again later."


class OtpSendingPaused(ServiceUnavailable):
    """The service sent its hourly quota of codes (`OTP_MAX_SENDS_PER_HOUR`, the SMS bill)."""

    code = "otp_sending_paused"
    message = "No more codes can be sent right now. Try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            details={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}
        )


class LoginAttemptsExceeded(_RetryLater):
    code = "login_attempts_exceeded"
    message = "Too many failed logins for this number or from this network. Try again later."


class PasswordChecksTooFrequent(_RetryLater):
    """Login or change-password, right or wrong, too often for the account or the client
    network this minute (`accounts.password_rate`)."""

    code = "password_rate_limited"
    message = "Too many password checks for this account or from this network. Wait a minute."


class PasswordRejected(ApiError):
    """The password rules refused a new password once the code proved the account.

    Rendered like a serializer's field error, which is what it is to the client.
    """

    status_code = 400
    code = "validation_error"
    message = "The request has invalid fields."

    def __init__(self, *, field: str, messages: list[str]) -> None:
        super().__init__(details={"fields": {field: messages}})


class InvalidCredentials(ApiError):
    status_code = 401
    code = "invalid_credentials"
    message = "The phone number or password is not correct."

    def __init__(self) -> None:
        super().__init__(headers=dict(_BEARER_CHALLENGE))


class PhoneNotVerified(ApiError):
    status_code = 403
    code = "phone_not_verified"
    message = "Verify your phone number with the code from signup before logging in."


class AccountDisabled(ApiError):
    status_code = 403
    code = "account_disabled"
    message = "This account is disabled."


class AccountGone(ApiError):
    """The account was deleted while this request, authenticated before, was served."""

    status_code = 401
    code = "authentication_failed"
    message = "This account no longer exists."

    def __init__(self) -> None:
        super().__init__(headers=dict(_BEARER_CHALLENGE))


class AccountChangedDuringDeletion(ApiError):
    """A row of the account (a login's, a purchase's) came in while the deletion ran: the
    deletion was rolled back whole, before Stripe was called."""

    status_code = 409
    code = "account_busy"
    message = (
        "The account changed while it was being deleted; nothing was deleted. Try again "
        "(an account without a password with a new code: its code was used)."
    )


class PhoneTaken(ApiError):
    status_code = 409
    code = "phone_taken"
    message = "An account with this phone number already exists. Log in instead."


class PasswordIncorrect(ApiError):
    status_code = 400
    code = "password_incorrect"
    message = "The current password is not correct."


class RefreshTokenRejected(ApiError):
    """token/refresh: the refresh token is malformed, expired, rotated or logged out."""

    status_code = 401
    code = "token_invalid"
    message = "The refresh token is invalid, expired or revoked."

    def __init__(self) -> None:
        super().__init__(headers=dict(_BEARER_CHALLENGE))


class LogoutTokenInvalid(ApiError):
    """logout: the body's refresh token is malformed, expired or another user's.

    A 400, not a 401: the caller's access token is fine, only the body is wrong.
    """

    status_code = 400
    code = "token_invalid"
    message = "The refresh token is invalid, expired or does not belong to you."
