"""Writes of accounts: OTP login, signup, password login, passwords, profile, deletion.

Every change made for one phone number runs under that number's advisory lock
(`accounts.locks.phone_lock`), so concurrent signups, sends and verifications of the same
number happen one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models.functions import Coalesce, Now
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.errors import (
    AccountDisabled,
    AccountGone,
    InvalidCredentials,
    PasswordIncorrect,
    PasswordRejected,
    PhoneNotVerified,
    PhoneTaken,
)
from accounts.locks import phone_lock
from accounts.login_throttle import OtpTry, login_attempt_begin, otp_try_begin
from accounts.models import (
    OneTimeCode,
    User,
    UserManager,
)
from accounts.otp import IssuedCode, OtpCheck, OtpOutcome, Purpose, otp_consume, otp_issue
from accounts.otp_scopes import known_network_remember
from accounts.password_rate import password_check_allow
from accounts.password_rules import password_rule_errors
from accounts.selectors import user_get_by_phone
from accounts.tokens import TokenPair, token_pair_issue, tokens_revoke_all


@dataclass(frozen=True)
class Login:
    user: User
    tokens: TokenPair
    created: bool = False


@dataclass(frozen=True)
class Signup:
    """`issued.signup_token` goes back to the caller only; verify-otp wants it with the code."""

    user: User
    issued: IssuedCode


def otp_login_send(*, phone: str, client_ip: str | None) -> IssuedCode:
    """Send a login code to any valid number; the account is made when the code is used."""
    return otp_issue(phone=phone, purpose=Purpose.LOGIN, client_ip=client_ip)


def _user_mark_logged_in(
    *, user: User, client_ip: str | None, phone_verified: bool = False
) -> None:
    """AccountGone when the account was deleted while the login was checked."""
    with transaction.atomic():
        if not User.objects.select_for_update().filter(pk=user.pk).exists():
            raise AccountGone()
        _user_login_record(user=user, client_ip=client_ip, phone_verified=phone_verified)


def _user_login_record(*, user: User, client_ip: str | None, phone_verified: bool) -> None:
    now = timezone.now()
    user.last_login = now
    fields = ["last_login"]
    if phone_verified and user.phone_verified_at is None:
        user.phone_verified_at = now
        fields.append("phone_verified_at")
    user.save(update_fields=fields)
    known_network_remember(user=user, client_ip=client_ip)


def _release_unless_wrong(slot: OtpTry, check: OtpCheck | None) -> None:
    """Give the network's slot back unless a wrong code was tried (`otp_try_begin`)."""
    if check is None or not check.wrong_guess:
        slot.release()


def otp_login_verify(
    *, phone: str, code: str, client_ip: str | None, signup_token: str | None = None
) -> Login:
    """Log in with a login code, creating the account for an unknown number.

    `created` is True when this is the account's first successful login: the account was
    made just now, or made unverified by signup and verified now. It is False afterwards.

    On that first login the password and e-mail given at signup survive only when the code
    comes with the `signup_token` that signup returned: the code proves the phone, the token
    proves that whoever holds the phone is whoever signed up. Otherwise (a plain send-otp
    code, or a signup code used by the phone's owner for someone else's signup) the password
    is made unusable and the e-mail cleared, so nobody can plant a password or a recovery
    address on a number they do not own. The owner can then set a password with
    change-password.

    Wrong codes count per number and scope (`accounts.otp_scopes`) and per client network
    (`otp_try_begin`).
    """
    login: Login | None = None
    check: OtpCheck | None = None
    slot = otp_try_begin(client_ip=client_ip)
    try:
        with transaction.atomic():
            phone_lock(phone)
            check = otp_consume(
                phone=phone,
                purpose=Purpose.LOGIN,
                code=code,
                client_ip=client_ip,
                signup_token=signup_token,
            )
            if check.accepted:
                login = _login_after_code(phone=phone, check=check, client_ip=client_ip)
    finally:
        _release_unless_wrong(slot, check)
    # Outside the transaction, so a wrong try stays counted.
    assert check is not None
    check.raise_unless_accepted()
    assert login is not None
    return login


def _login_after_code(*, phone: str, check: OtpCheck, client_ip: str | None) -> Login:
    user = User.objects.select_for_update().filter(phone=phone).first()
    if user is None:
        user = User.objects.create_user(phone=phone)
    if not user.is_active:
        raise AccountDisabled()
    first_login = user.phone_verified_at is None
    if first_login and not check.signup_confirmed:
        _user_drop_unproven_signup_details(user=user)
    _user_mark_logged_in(user=user, client_ip=client_ip, phone_verified=True)
    return Login(user=user, tokens=token_pair_issue(user=user), created=first_login)


def _user_drop_unproven_signup_details(*, user: User) -> None:
    if user.has_usable_password() or user.email:
        user.set_unusable_password()
        user.email = ""
        user.save(update_fields=["password", "email"])


def user_signup(
    *,
    phone: str,
    client_ip: str | None,
    name: str | None = None,
    email: str | None = None,
    password: str | None = None,
) -> Signup:
    """Create an unverified account (or refresh an unverified one) and send it a login code.

    A number with a verified account is PhoneTaken. For an unverified account the given
    name and email replace the stored ones, and the password is always replaced (or removed
    when none is given): the latest signup defines the account until its code is verified.
    The resend cooldown and hourly limits apply, and a refused send changes nothing.
    The password and e-mail outlive verification only with the returned signup token (see
    `otp_login_verify`).
    """
    with transaction.atomic():
        phone_lock(phone)
        user = User.objects.select_for_update().filter(phone=phone).first()
        if user is not None and user.phone_verified_at is not None:
            raise PhoneTaken()
        issued = otp_issue(
            phone=phone, purpose=Purpose.LOGIN, client_ip=client_ip, from_signup=True
        )
        if user is None:
            user = User(phone=phone)
        if name is not None:
            user.name = name
        if email is not None:
            user.email = UserManager.normalize_email(email)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
    return Signup(user=user, issued=issued)


def _password_matches(*, user: User | None, password: str) -> bool:
    if user is None or not user.has_usable_password():
        # Hash anyway, so an unknown number or a password-less account answers as slowly
        # as a wrong password does.
        make_password(password)
        return False
    return user.check_password(password)


def password_login(*, phone: str, password: str, client_ip: str | None) -> Login:
    """Log in with phone and password.

    A wrong password, an unknown number and an account without a password are the same
    InvalidCredentials. Only after a correct password does the caller learn that the
    account is disabled (AccountDisabled) or its phone not yet verified (PhoneNotVerified).
    Too many failures for the number or from the client's network this hour are
    LoginAttemptsExceeded, before the password is checked (`accounts.login_throttle`).
    Checks of any outcome too often for the number or the network this minute are
    PasswordChecksTooFrequent (`accounts.password_rate`).
    """
    password_check_allow(account=phone, client_ip=client_ip)
    attempt = login_attempt_begin(phone=phone, client_ip=client_ip)
    user = user_get_by_phone(phone=phone)
    if not _password_matches(user=user, password=password):
        raise InvalidCredentials()  # the attempt keeps its slots: a failure
    assert user is not None
    if not user.is_active or user.phone_verified_at is None:
        attempt.release()  # a right password is not a failure
        if not user.is_active:
            raise AccountDisabled()
        raise PhoneNotVerified()
    with transaction.atomic():  # the tokens too: a deletion must not slip in between
        _user_mark_logged_in(user=user, client_ip=client_ip)
        tokens = token_pair_issue(user=user)
    attempt.succeed()
    return Login(user=user, tokens=tokens)


def password_forgot(*, phone: str, client_ip: str | None) -> IssuedCode:
    """Send a password-reset code, answering alike for every number.

    No enumeration: for a number without an active account the send is still recorded
    (`otp_issue(deliver=False)`), so the cooldown, the hourly limits, the response body
    and later reset tries (otp_invalid, then otp_attempts_exceeded) behave exactly as for a
    real account. The differences are that no code exists or leaves the server, and the
    `otp` field, which only appears while OTP_RETURN_IN_RESPONSE is on (never in
    production), is absent.
    """
    user = user_get_by_phone(phone=phone)
    return otp_issue(
        phone=phone,
        purpose=Purpose.PASSWORD_RESET,
        client_ip=client_ip,
        deliver=user is not None and user.is_active,
    )


def password_reset(*, phone: str, code: str, new_password: str, client_ip: str | None) -> None:
    """Set a new password with a reset code, and log the account out everywhere.

    The code proves the phone, so an account not yet verified becomes verified (and loses
    the e-mail of its unproven signup, as verify-otp without the signup token does).
    Only then are the password rules checked against the account itself (they compare the
    password with its name and e-mail): a refused password is PasswordRejected, and the
    code stays usable for a better one. Wrong codes count as verify-otp's do.
    """
    check: OtpCheck | None = None
    slot = otp_try_begin(client_ip=client_ip)
    try:
        with transaction.atomic():
            phone_lock(phone)
            check = otp_consume(
                phone=phone, purpose=Purpose.PASSWORD_RESET, code=code, client_ip=client_ip
            )
            if check.accepted:
                check = _password_reset_after_code(
                    phone=phone, new_password=new_password, client_ip=client_ip, check=check
                )
    finally:
        _release_unless_wrong(slot, check)
    assert check is not None
    check.raise_unless_accepted()


def _password_reset_after_code(
    *, phone: str, new_password: str, client_ip: str | None, check: OtpCheck
) -> OtpCheck:
    user = User.objects.select_for_update().filter(phone=phone, is_active=True).first()
    if user is None:  # disabled or deleted since the code was sent
        return OtpCheck(OtpOutcome.NO_ACTIVE_CODE)
    if errors := password_rule_errors(new_password, user):
        # Raised inside the transaction: the code's use is rolled back with it.
        raise PasswordRejected(field="new_password", messages=errors)
    user.set_password(new_password)
    if user.phone_verified_at is None:
        user.phone_verified_at = timezone.now()
        user.email = ""  # given by a signup nobody proved, like its password
    user.save(update_fields=["password", "phone_verified_at", "email"])
    tokens_revoke_all(user=user)
    known_network_remember(user=user, client_ip=client_ip)
    return check


def password_change(
    *, user: User, old_password: str | None, new_password: str, client_ip: str | None
) -> TokenPair:
    """Change the password, log out everywhere, and return a fresh pair for this client.

    `old_password` is checked only when the account has a usable password; an account that
    logs in by OTP alone sets its first password without one. A wrong `old_password` counts
    as a wrong login password for the number and the client network, so a stolen access
    token cannot guess it faster than the login could (LoginAttemptsExceeded, before the
    hash is computed). Like login, it is limited per account and network each minute.
    """
    password_check_allow(account=str(user.phone), client_ip=client_ip)
    attempt = None
    if user.has_usable_password():
        # Committed before the check: the refusal below rolls back only its own transaction.
        attempt = login_attempt_begin(phone=str(user.phone), client_ip=client_ip)
    with transaction.atomic():
        locked = User.objects.select_for_update().filter(pk=user.pk).first()
        if locked is None:
            raise AccountGone()  # deleted while this request was served
        if locked.has_usable_password() and not locked.check_password(old_password or ""):
            raise PasswordIncorrect()  # the attempt keeps its slots: a failure
        locked.set_password(new_password)
        locked.save(update_fields=["password"])
        tokens_revoke_all(user=locked)
        tokens = token_pair_issue(user=locked)
    if attempt is not None:
        attempt.release()
    return tokens


def user_profile_update(*, user: User, name: str | None = None, email: str | None = None) -> User:
    """Change the name and email given; None leaves a field as it is, "" clears it."""
    fields: list[str] = []
    if name is not None:
        user.name = name
        fields.append("name")
    if email is not None:
        user.email = UserManager.normalize_email(email)
        fields.append("email")
    if fields:
        user.save(update_fields=fields)
    return user


# --- Deleting the account ------------------------------------------------------------------


def account_deletion_verify(
    *, user: User, password: str | None, otp: str | None, client_ip: str | None
) -> None:
    """Prove, for a deletion, that the caller is the account's owner and not merely holds an
    access token: with the password when the account has one (limited and counted like a
    login: PasswordIncorrect, LoginAttemptsExceeded, PasswordChecksTooFrequent), else with a
    login code sent to the phone (the errors of verify-otp). The caller checked that the
    needed one was given."""
    if user.has_usable_password():
        password_check_allow(account=str(user.phone), client_ip=client_ip)
        attempt = login_attempt_begin(phone=str(user.phone), client_ip=client_ip)
        if not user.check_password(password or ""):
            raise PasswordIncorrect()  # the attempt keeps its slots: a failure
        attempt.release()
        return
    check: OtpCheck | None = None
    slot = otp_try_begin(client_ip=client_ip)
    try:
        with transaction.atomic():
            phone_lock(str(user.phone))
            check = otp_consume(
                phone=str(user.phone), purpose=Purpose.LOGIN, code=otp or "", client_ip=client_ip
            )
    finally:
        _release_unless_wrong(slot, check)
    assert check is not None
    check.raise_unless_accepted()


def account_lock_for_deletion(*, user: User) -> bool:
    """Take the number's lock and then the user's row, first in a deletion's transaction, in
    the order every writer of the account takes them (code checks and logins: the number,
    then the row; token rotation and logout: the row), so those and the deletion queue
    instead of deadlocking; False when the account is gone already. NO KEY UPDATE: a send
    that only references the user is not held up, and a chatroom create, which takes the
    same lock, waits and then finds the account gone (`AccountGone`)."""
    phone_lock(str(user.phone))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {connection.ops.quote_name(User._meta.db_table)} "  # noqa: S608
            "WHERE id = %s FOR NO KEY UPDATE",
            [user.pk],
        )
        return cursor.fetchone() is not None


def account_delete(*, user: User) -> None:
    """Delete the account and what only it used: refresh tokens and known networks; in the
    caller's transaction. Its access tokens stop working at once (`User.delete` revokes the
    cached row first, or raises RevocationUnavailable before anything is deleted). Rows of
    the apps above (chatrooms, usage, billing) go with the user by their foreign keys, or by
    their own services first.

    The number's send log of codes and its failure counters stay until beat purges them
    (a day, an hour): they are what the limits on texts and guesses count, and deleting an
    account must not reset those. The codes lose their hashes and can no longer be used."""
    OutstandingToken.objects.filter(user=user).delete()  # their blacklist and family rows too
    OneTimeCode.objects.filter(phone=str(user.phone)).update(
        code_hash="", signup_token_hash="", used_at=Coalesce("used_at", Now())
    )
    user.delete()
