"""signup: unverified account + login code; verify-otp completes it."""

import pytest

from accounts.models import OneTimeCode, User
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import bearer, post, send_code

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"
PASSWORD = "violet-Canyon-42-drift"


def signup(client, **body):
    return post(client, "/api/auth/signup", {"phone": PHONE, **body})


def verify(client, code, **extra):
    return post(client, "/api/auth/verify-otp", {"phone": PHONE, "otp": code, **extra})


def verify_signup(client, signed_up):
    """verify-otp as the person who signed up: the code (from their phone) and the token."""
    body = signed_up.json()
    return verify(client, body["otp"], signup_token=body["signup_token"])


def login(client, password=PASSWORD):
    return post(client, "/api/auth/login", {"phone": PHONE, "password": password})


def test_signup_creates_an_unverified_account_and_sends_a_code(api_client):
    response = signup(api_client, name="Asha", email="Asha@Example.COM", password=PASSWORD)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user", "detail", "otp", "expires_in", "signup_token"}
    assert body["expires_in"] == 300
    assert len(body["signup_token"]) >= 43  # 32 random bytes, URL-safe base64
    assert body["user"]["phone"] == PHONE
    assert body["user"]["name"] == "Asha"
    assert body["user"]["email"] == "Asha@example.com"
    assert body["user"]["has_password"] is True
    assert body["user"]["tier"] == "basic"
    user = User.objects.get(phone=PHONE)
    assert user.phone_verified_at is None


def test_verifying_the_signup_code_with_its_token_keeps_the_password_and_email(api_client):
    signed_up = signup(api_client, email="asha@example.com", password=PASSWORD)
    verified = verify_signup(api_client, signed_up)
    assert verified.status_code == 200
    assert verified.json()["created"] is True
    assert verified.json()["user"]["has_password"] is True
    assert verified.json()["user"]["email"] == "asha@example.com"
    assert login(api_client).status_code == 200


def test_the_signup_token_is_not_stored(api_client):
    token = signup(api_client, password=PASSWORD).json()["signup_token"]
    stored = OneTimeCode.objects.get(phone=PHONE)
    assert stored.signup_token_hash
    assert token not in stored.signup_token_hash


def test_each_signup_gets_its_own_token(api_client, clock):
    first = signup(api_client, password=PASSWORD).json()["signup_token"]
    clock.shift(61)
    assert signup(api_client, password=PASSWORD).json()["signup_token"] != first


def test_a_signup_code_verified_without_its_token_drops_the_password_and_email(api_client):
    # Someone signs up with a number they do not own; the code goes to the owner's phone.
    signed_up = signup(api_client, email="mallory@attacker.test", password=PASSWORD)
    code_on_the_owners_phone = signed_up.json()["otp"]
    # The owner cannot ask for a fresh code yet (cooldown)...
    assert send_code(api_client, PHONE).json()["error"]["code"] == "otp_resend_too_soon"
    # ...so they log in with the code they got. It works, but nothing of the signup stays.
    owner = verify(api_client, code_on_the_owners_phone)
    assert owner.status_code == 200
    assert owner.json()["created"] is True
    assert owner.json()["user"]["has_password"] is False
    assert owner.json()["user"]["email"] is None
    assert login(api_client).json()["error"]["code"] == "invalid_credentials"


def test_the_token_of_an_earlier_signup_does_not_keep_a_later_signups_password(api_client, clock):
    owners_token = signup(api_client, password="owners-Own-pass-77").json()["signup_token"]
    clock.shift(61)
    # Someone else signs the number up again: the new code reaches the owner's phone.
    code = signup(api_client, email="mallory@attacker.test", password=PASSWORD).json()["otp"]
    owner = verify(api_client, code, signup_token=owners_token)
    assert owner.status_code == 200
    assert owner.json()["user"]["has_password"] is False
    assert owner.json()["user"]["email"] is None
    assert login(api_client).json()["error"]["code"] == "invalid_credentials"


def test_a_signup_token_does_not_keep_a_password_with_a_send_otp_code(api_client, clock):
    token = signup(api_client, password=PASSWORD).json()["signup_token"]
    clock.shift(61)
    code = send_code(api_client, PHONE).json()["otp"]
    owner = verify(api_client, code, signup_token=token)
    assert owner.json()["user"]["has_password"] is False


@pytest.mark.parametrize("absent", [None, ""])
def test_a_null_or_empty_signup_token_counts_as_absent(api_client, absent):
    code = signup(api_client, password=PASSWORD).json()["otp"]
    verified = verify(api_client, code, signup_token=absent)
    assert verified.status_code == 200
    assert verified.json()["user"]["has_password"] is False


def test_a_signup_token_is_a_string(api_client):
    code = signup(api_client, password=PASSWORD).json()["otp"]
    response = verify(api_client, code, signup_token=12)
    assert response.status_code == 400
    assert "signup_token" in response.json()["error"]["details"]["fields"]


def test_login_before_verifying_is_refused_only_after_the_right_password(api_client):
    signup(api_client, password=PASSWORD)
    unverified = login(api_client)
    assert unverified.status_code == 403
    assert unverified.json()["error"]["code"] == "phone_not_verified"
    wrong = login(api_client, password="not-the-password-1")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_credentials"


def test_signup_for_a_verified_account_is_phone_taken(api_client):
    UserFactory(phone=PHONE)
    response = signup(api_client, name="Someone else")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "phone_taken"
    assert User.objects.get(phone=PHONE).name != "Someone else"


def test_signup_in_another_format_of_a_taken_number_is_phone_taken(api_client):
    UserFactory(phone=PHONE)
    response = post(api_client, "/api/auth/signup", {"phone": "098765 43210"})
    assert response.status_code == 409


def test_signup_again_for_an_unverified_account_updates_it_and_sends_a_new_code(api_client, clock):
    first = signup(api_client, name="Asha", email="asha@example.com").json()
    clock.shift(61)
    second = signup(api_client, name="Asha R")
    assert second.status_code == 201
    assert second.json()["user"]["id"] == first["user"]["id"]
    assert second.json()["user"]["name"] == "Asha R"
    assert second.json()["user"]["email"] == "asha@example.com"
    assert User.objects.filter(phone=PHONE).count() == 1
    verified = verify_signup(api_client, second)
    assert verified.json()["created"] is True
    assert verified.json()["user"]["email"] == "asha@example.com"


def test_signup_again_within_the_cooldown_is_refused_and_changes_nothing(api_client):
    signup(api_client, name="Asha")
    refused = signup(api_client, name="Mallory", password=PASSWORD)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "otp_resend_too_soon"
    assert refused["Retry-After"] == "60"
    user = User.objects.get(phone=PHONE)
    assert user.name == "Asha"
    assert not user.has_usable_password()


def test_a_password_planted_by_an_unverified_signup_is_dropped_by_a_plain_code_login(
    api_client, clock
):
    # Someone signs up with a number they do not own and sets a password...
    signup(api_client, password=PASSWORD)
    clock.shift(61)
    # ...then the owner logs in with a code from send-otp.
    code = send_code(api_client, PHONE).json()["otp"]
    owner = verify(api_client, code)
    assert owner.json()["created"] is True
    assert owner.json()["user"]["has_password"] is False
    assert login(api_client).json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("password", "message_part"),
    [
        ("short1", "too short"),
        ("12345678901", "entirely numeric"),
        ("password123", "too common"),
    ],
)
def test_signup_checks_the_password_rules(api_client, password, message_part):
    response = signup(api_client, password=password)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(message_part in message for message in error["details"]["fields"]["password"])
    assert not User.objects.filter(phone=PHONE).exists()


def test_signup_refuses_a_password_like_the_email(api_client):
    response = signup(api_client, email="sunflowerfield@example.com", password="sunflowerfield")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["details"]["fields"]


def test_signup_refuses_a_bad_email(api_client):
    response = signup(api_client, email="not-an-email")
    assert response.status_code == 400
    assert "email" in response.json()["error"]["details"]["fields"]


def test_signup_without_profile_data_gives_null_name_and_email(api_client):
    body = signup(api_client).json()
    assert body["user"]["name"] is None
    assert body["user"]["email"] is None
    assert body["user"]["has_password"] is False


def test_the_tokens_from_a_signup_code_belong_to_the_new_account(api_client):
    access = verify_signup(api_client, signup(api_client, password=PASSWORD)).json()["access"]
    me = api_client.get("/api/user/me", **bearer(access))
    assert me.json()["phone"] == PHONE
