"""forgot-password, reset-password and change-password."""

import pytest

from accounts.models import OneTimeCode
from accounts.otp import otp_code_hash
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import (
    bearer,
    login_with_code,
    login_with_password,
    post,
    send_code,
    wrong_code,
)

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"
UNKNOWN = "+919876543299"
NEW_PASSWORD = "amber-Harbor-93-quill"


def forgot(client, phone=PHONE):
    return post(client, "/api/auth/forgot-password", {"phone": phone})


def reset(client, code, phone=PHONE, new_password=NEW_PASSWORD):
    return post(
        client,
        "/api/auth/reset-password",
        {"phone": phone, "otp": code, "new_password": new_password},
    )


def change(client, access, **body):
    return post(client, "/api/auth/change-password", body, **bearer(access))


def refresh(client, token):
    return post(client, "/api/auth/token/refresh", {"refresh": token})


def me(client, access):
    return client.get("/api/user/me", **bearer(access))


def login(client, password):
    return post(client, "/api/auth/login", {"phone": PHONE, "password": password})


# --- forgot-password -------------------------------------------------------------------


def test_forgot_password_answers_alike_for_known_and_unknown_numbers(api_client, settings):
    UserFactory(phone=PHONE)
    known = forgot(api_client).json()
    unknown = forgot(api_client, UNKNOWN).json()
    assert set(known) == {"detail", "otp", "expires_in"}
    # The code is only returned for the real account; the rest is identical.
    assert set(unknown) == {"detail", "expires_in"}
    assert {k: v for k, v in known.items() if k != "otp"} == unknown

    settings.OTP_RETURN_IN_RESPONSE = False
    assert forgot(api_client, "+919876543201").json() == forgot(api_client, "+919876543202").json()


def test_forgot_password_applies_the_same_cooldown_to_unknown_numbers(api_client, clock):
    UserFactory(phone=PHONE)
    forgot(api_client)
    forgot(api_client, UNKNOWN)
    known, unknown = forgot(api_client), forgot(api_client, UNKNOWN)
    assert known.status_code == unknown.status_code == 429
    assert known.json() == unknown.json()
    assert known["Retry-After"] == unknown["Retry-After"]


def test_reset_tries_for_an_unknown_number_fail_like_wrong_codes(api_client):
    forgot(api_client, UNKNOWN)
    answers = [reset(api_client, "123456", phone=UNKNOWN) for _ in range(6)]
    codes = [answer.json()["error"]["code"] for answer in answers]
    assert codes == ["otp_invalid"] * 4 + ["otp_attempts_exceeded"] * 2


def test_no_six_digit_code_opens_the_send_recorded_for_an_unknown_number(api_client):
    forgot(api_client, UNKNOWN)
    stored = OneTimeCode.objects.get(phone=UNKNOWN).code_hash
    hashes = (
        otp_code_hash(phone=UNKNOWN, purpose="password_reset", code=f"{n:06d}")
        for n in range(10**6)
    )
    assert not any(candidate == stored for candidate in hashes)


# --- reset-password -----------------------------------------------------------------------


def test_reset_sets_the_password_and_logs_out_everywhere(api_client):
    UserFactory(phone=PHONE)
    before = login_with_password(api_client, PHONE, DEFAULT_PASSWORD)
    assert me(api_client, before["access"]).status_code == 200

    code = forgot(api_client).json()["otp"]
    response = reset(api_client, code)
    assert response.status_code == 200
    assert set(response.json()) == {"detail"}

    assert refresh(api_client, before["refresh"]).status_code == 401
    assert me(api_client, before["access"]).status_code == 401
    assert login(api_client, DEFAULT_PASSWORD).status_code == 401
    assert login(api_client, NEW_PASSWORD).status_code == 200


def test_a_reset_code_works_once(api_client):
    UserFactory(phone=PHONE)
    code = forgot(api_client).json()["otp"]
    assert reset(api_client, code).status_code == 200
    again = reset(api_client, code, new_password="other-Meadow-55-kite")
    assert again.json()["error"]["code"] == "otp_expired"


def test_a_wrong_reset_code_changes_nothing(api_client):
    UserFactory(phone=PHONE)
    code = forgot(api_client).json()["otp"]
    response = reset(api_client, wrong_code(code))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "otp_invalid"
    assert login(api_client, DEFAULT_PASSWORD).status_code == 200


def test_reset_checks_the_password_rules_without_spending_the_code(api_client):
    UserFactory(phone=PHONE)
    code = forgot(api_client).json()["otp"]
    weak = reset(api_client, code, new_password="123")
    assert weak.status_code == 400
    assert weak.json()["error"]["code"] == "validation_error"
    assert "new_password" in weak.json()["error"]["details"]["fields"]
    assert reset(api_client, code).status_code == 200


def test_a_login_code_cannot_reset_a_password(api_client):
    UserFactory(phone=PHONE)
    login_code = send_code(api_client, PHONE).json()["otp"]
    response = reset(api_client, login_code)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "otp_expired"
    assert login(api_client, DEFAULT_PASSWORD).status_code == 200


def test_a_reset_code_cannot_log_in(api_client):
    UserFactory(phone=PHONE)
    reset_code = forgot(api_client).json()["otp"]
    response = post(api_client, "/api/auth/verify-otp", {"phone": PHONE, "otp": reset_code})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "otp_expired"
    # The reset code is still good for its own purpose.
    assert reset(api_client, reset_code).status_code == 200


def test_reset_gives_a_password_to_an_otp_only_account_and_revokes_its_tokens(api_client):
    UserFactory(phone=PHONE, no_password=True)
    session = login_with_code(api_client, PHONE)
    code = forgot(api_client).json()["otp"]
    assert reset(api_client, code).status_code == 200
    assert me(api_client, session["access"]).status_code == 401
    assert refresh(api_client, session["refresh"]).status_code == 401
    assert login(api_client, NEW_PASSWORD).status_code == 200


# --- change-password -----------------------------------------------------------------------


def test_change_password_returns_a_fresh_pair_and_revokes_the_old_ones(api_client, user):
    phone = str(user.phone)
    current = login_with_password(api_client, phone, DEFAULT_PASSWORD)
    elsewhere = login_with_password(api_client, phone, DEFAULT_PASSWORD)

    response = change(
        api_client, current["access"], old_password=DEFAULT_PASSWORD, new_password=NEW_PASSWORD
    )
    assert response.status_code == 200
    fresh = response.json()
    assert set(fresh) == {"access", "refresh"}

    for old in (current, elsewhere):
        assert me(api_client, old["access"]).status_code == 401
        assert refresh(api_client, old["refresh"]).status_code == 401
    assert me(api_client, fresh["access"]).status_code == 200
    assert refresh(api_client, fresh["refresh"]).status_code == 200
    assert (
        post(api_client, "/api/auth/login", {"phone": phone, "password": NEW_PASSWORD}).status_code
        == 200
    )


def test_change_password_with_a_wrong_old_password_is_password_incorrect(api_client, user):
    tokens = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    response = change(
        api_client, tokens["access"], old_password="Wrong-old-pass-1", new_password=NEW_PASSWORD
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "password_incorrect"
    assert me(api_client, tokens["access"]).status_code == 200


def test_change_password_without_the_old_one_is_a_validation_error(api_client, user):
    tokens = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    response = change(api_client, tokens["access"], new_password=NEW_PASSWORD)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["fields"] == {"old_password": ["This field is required."]}


def test_an_otp_only_account_sets_its_first_password_without_an_old_one(api_client):
    session = login_with_code(api_client, PHONE)
    assert session["user"]["has_password"] is False
    response = change(api_client, session["access"], new_password=NEW_PASSWORD)
    assert response.status_code == 200
    # The access token of the password-less account is revoked too.
    assert me(api_client, session["access"]).status_code == 401
    assert me(api_client, response.json()["access"]).json()["has_password"] is True
    assert login(api_client, NEW_PASSWORD).status_code == 200


def test_change_password_checks_the_password_rules(api_client, user):
    tokens = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    response = change(
        api_client, tokens["access"], old_password=DEFAULT_PASSWORD, new_password="abc"
    )
    assert response.status_code == 400
    assert "new_password" in response.json()["error"]["details"]["fields"]


def test_change_password_needs_a_token(api_client):
    response = post(api_client, "/api/auth/change-password", {"new_password": NEW_PASSWORD})
    assert response.status_code == 401


# --- The password rules do not reveal accounts --------------------------------------------


def test_without_a_valid_code_reset_says_nothing_about_the_account(api_client):
    UserFactory(phone=PHONE, name="Priya Raman", email="priya.raman@example.com")
    # Passwords the rules would refuse for this account (like its e-mail, like its name):
    # without the code, the answers are those of a number with no account.
    for password in ("priya.raman@example.com", "PriyaRaman77"):
        known = reset(api_client, "000000", new_password=password)
        unknown = reset(api_client, "000000", phone=UNKNOWN, new_password=password)
        assert known.status_code == unknown.status_code == 400
        assert known.json() == unknown.json()
        assert known.json()["error"]["code"] == "otp_expired"

    forgot(api_client)
    forgot(api_client, UNKNOWN)
    known = reset(api_client, "000000", new_password="PriyaRaman77")
    unknown = reset(api_client, "000000", phone=UNKNOWN, new_password="PriyaRaman77")
    assert known.json() == unknown.json()
    assert known.json()["error"]["code"] == "otp_invalid"


def test_rules_that_need_no_account_are_checked_before_the_code(api_client):
    UserFactory(phone=PHONE)
    for phone in (PHONE, UNKNOWN):
        weak = reset(api_client, "000000", phone=phone, new_password="123")
        assert weak.json()["error"]["code"] == "validation_error"
        assert "new_password" in weak.json()["error"]["details"]["fields"]


def test_with_the_code_a_password_like_the_accounts_email_is_refused_and_the_code_kept(
    api_client,
):
    UserFactory(phone=PHONE, name="Priya Raman", email="priya.raman@example.com")
    code = forgot(api_client).json()["otp"]
    refused = reset(api_client, code, new_password="priya.raman@example.com")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["fields"] == {
        "new_password": ["The password is too similar to the email."]
    }
    assert login(api_client, DEFAULT_PASSWORD).status_code == 200
    # The refused password did not spend the code, nor count as a wrong try.
    assert OneTimeCode.objects.get(phone=PHONE).attempts == 0
    assert reset(api_client, code).status_code == 200
    assert login(api_client, NEW_PASSWORD).status_code == 200


def test_change_password_checks_the_rules_against_the_account(api_client):
    user = UserFactory(phone=PHONE, name="Priya Raman")
    tokens = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    response = change(
        api_client, tokens["access"], old_password=DEFAULT_PASSWORD, new_password="PriyaRaman77"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {
        "new_password": ["The password is too similar to the name."]
    }


def test_reset_verifies_a_signed_up_number_without_keeping_the_signups_email(api_client):
    signed_up = post(
        api_client,
        "/api/auth/signup",
        {"phone": PHONE, "email": "mallory@attacker.test", "password": "Mallory-pass-4242"},
    )
    assert signed_up.status_code == 201
    code = forgot(api_client).json()["otp"]
    assert reset(api_client, code).status_code == 200
    session = login_with_password(api_client, PHONE, NEW_PASSWORD)
    assert session["user"]["email"] is None
